"""structlog is the logging API; this routes its events into telemetry and to stderr.

At `telemetry.log_level` and above, a log call becomes a `log_type: "log"` line
(`data.message`, `data.logger`, the bound keys) in the same queue as events,
and a readable line on stderr for journald. stdlib `logging` (asyncio, libraries)
is forwarded the same way, so "Task exception was never retrieved" reaches the file.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from swimmy.telemetry.envelope import SEVERITY_RANK
from swimmy.telemetry.queue import EventQueue

_STRUCTLOG_LEVELS = {"debug": "debug", "info": "info", "warning": "warning", "warn": "warning",
                     "error": "error", "exception": "error", "critical": "critical", "fatal": "critical"}


class LogBridge:
    """A structlog processor: emits log events into the queue, drops those below the level."""

    def __init__(self, queue: EventQueue, level: str) -> None:
        self.queue = queue
        self.level = level

    @property
    def level(self) -> str:
        """The minimum severity routed (reloadable)."""
        return self._level

    @level.setter
    def level(self, value: str) -> None:
        self._level = value
        self._min_rank = SEVERITY_RANK[value]

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        severity = _STRUCTLOG_LEVELS.get(str(event_dict.get("level", method_name)), "info")
        if SEVERITY_RANK[severity] < self._min_rank:
            raise structlog.DropEvent
        data = {k: v for k, v in event_dict.items() if k not in ("event", "level", "service", "correlation_id")}
        data["message"] = str(event_dict.get("event", ""))
        data["logger"] = str(data.pop("logger_name", "swimmy"))
        self.queue.emit(
            "log",
            service=str(event_dict.get("service", "core")),
            severity=severity,
            correlation_id=event_dict.get("correlation_id"),
            data=data,
            log_type="log",
        )
        return event_dict


class _StdlibForwarder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = structlog.get_logger(logger_name=record.name)
            kwargs: dict[str, Any] = {}
            if record.exc_info:
                kwargs["exc_info"] = record.exc_info
            log.log(record.levelno, record.getMessage(), **kwargs)
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.handleError(record)


def configure_logging(queue: EventQueue, level: str, stream: TextIO | None = None) -> LogBridge:
    """Install structlog (process-wide: one daemon per process) with the bridge; return it."""
    bridge = LogBridge(queue, level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            bridge,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdlibForwarder):
            root.removeHandler(handler)
    root.addHandler(_StdlibForwarder())
    root.setLevel(logging.INFO)
    return bridge


def configure_stderr_logging(level: str, stream: TextIO | None = None) -> None:
    """structlog to stderr only, at `level` and above: for worker processes, which never touch the telemetry file."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Undo configure_logging (tests, and the end of serve)."""
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdlibForwarder):
            root.removeHandler(handler)
