"""The ticketing app on a movable clock: ``clocked_client()`` (the hold clock is ``manual_clock``)
and ``shop(gateway=None, **settings)`` (also a MockGateway the test can inspect)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stagedoor.clock import ManualClock
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings
from ticketing.app import create_app
from ticketing.appkeys import CLOCK


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_client(aiohttp_client: Any, settings: Settings, keyring: KeyRing,
                   manual_clock: ManualClock) -> Callable[..., Any]:
    """``await clocked_client()`` -> ticketing TestClient whose hold clock is ``manual_clock``."""

    async def start(settings_: Settings | None = None) -> Any:
        app = create_app(settings_ or settings, keyring)
        app[CLOCK] = manual_clock
        return await aiohttp_client(app)

    return start


@pytest.fixture
def shop(aiohttp_client: Any, make_settings: Callable[..., Settings], keyring: KeyRing,
         manual_clock: ManualClock) -> Callable[..., Any]:
    """``await shop(gateway=None, **settings)`` -> ticketing TestClient on ``manual_clock`` with a
    MockGateway tests can inspect (``client.gateway``); rate limits off unless asked for."""
    from ticketing.appkeys import GATEWAY
    from ticketing.payments.gateway import MockGateway

    async def start(gateway: Any = None, **overrides: Any) -> Any:
        overrides.setdefault("rate_limits_enabled", False)
        settings_ = make_settings(**overrides)
        gateway = gateway or MockGateway(latency_ms=settings_.payment_mock_latency_ms,
                                         slow_ms=settings_.payment_mock_slow_ms,
                                         failure_rate=settings_.payment_mock_failure_rate)
        app = create_app(settings_, keyring)
        app[CLOCK] = manual_clock
        app[GATEWAY] = gateway
        client = await aiohttp_client(app)
        client.gateway = gateway
        return client

    return start
