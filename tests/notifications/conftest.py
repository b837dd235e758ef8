"""Fixtures of the notification tests: a real SMTP server in process (aiosmtpd), the service
over the test's database, and fast bulk inserts of events, orders and tickets (the helpers
behind them are in tests/support/notifications.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from stagedoor.dev_mail import MailSink, sink_port, start_sink
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings
from tests.support.notifications import Catalog, Sink
from ticketing.notifications.metrics import NotificationMetrics
from ticketing.notifications.service import Notifications


@pytest.fixture
async def start_smtp() -> AsyncIterator[Callable[..., Any]]:
    servers = []

    async def start(handler: MailSink | None = None) -> Sink:
        handler = handler or MailSink()
        server = await start_sink(handler, "127.0.0.1", 0)
        servers.append(server)
        return Sink(handler, sink_port(server))

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def sink(start_smtp: Callable[..., Any]) -> Sink:
    return await start_smtp()


@pytest.fixture
def mail_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(port: int, **overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, smtp_timeout_s=5.0,
            notification_retry_base_ms=10, notification_retry_max_ms=50, sms_provider="log",
            public_ticketing_url="https://tickets.example.test", public_waitingroom_url="https://queue.example.test")
        values.update(overrides)
        return make_settings(**values)
    return make


@pytest.fixture
def make_notifications(pool: asyncpg.Pool) -> Callable[..., Notifications]:
    def make(settings: Settings, **kw: Any) -> Notifications:
        return Notifications(settings, pool, NotificationMetrics(CollectorRegistry()), **kw)
    return make


@pytest.fixture
def catalog(pool: asyncpg.Pool, keyring: KeyRing) -> Catalog:
    return Catalog(pool, keyring)
