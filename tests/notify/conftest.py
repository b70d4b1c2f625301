"""Fixtures of the Discord notifier's tests: the loopback webhook (tests/discordkit.py), started and closed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from discordkit import WebhookServer


@pytest.fixture
async def server() -> AsyncIterator[WebhookServer]:
    """A loopback webhook, listening for the test and closed after it."""
    srv = WebhookServer()
    await srv.start()
    yield srv
    await srv.close()
