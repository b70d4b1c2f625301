"""structlog events become log lines in the queue at the configured level and above."""

from __future__ import annotations

import io
import logging

import structlog

from swimmy.telemetry.logbridge import configure_logging, reset_logging
from swimmy.telemetry.queue import EventQueue


class TestLogBridge:
    def test_routes_at_level_and_above_with_message_and_logger(self) -> None:
        """info+ reaches the queue as log_type 'log'; debug does not; stderr gets a readable line."""
        q = EventQueue(100)
        err = io.StringIO()
        bridge = configure_logging(q, "info", err)
        try:
            log = structlog.get_logger(logger_name="swimmy.test")
            log.debug("hidden")
            log.warning("disk nearly full", free_bytes=10, service="school", correlation_id="C1")
            logging.getLogger("asyncio").error("stdlib says hello")
            bridge.level = "debug"
            log.debug("now visible")
        finally:
            reset_logging()
        records = q.take(10)
        assert [(r[2], r[3], r[5]) for r in records] == [
            ("log", "log", "warning"),
            ("log", "log", "error"),
            ("log", "log", "debug"),
        ]
        first = records[0]
        assert first[4] == "school" and first[6] == "C1"
        assert first[7]["message"] == "disk nearly full"
        assert first[7]["logger"] == "swimmy.test"
        assert first[7]["free_bytes"] == 10
        assert records[1][7]["logger"] == "asyncio"
        assert "disk nearly full" in err.getvalue()
        assert "hidden" not in err.getvalue()
