"""Shared fixtures of the ticketing tests: events built over HTTP, a movable clock.

``make_event(...)`` creates an event through POST /api/events as an organizer and returns
its JSON; ``seat_map(...)`` builds the seat-map part of such a body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stagedoor.bus import OutboxRelay, StreamConsumer
from stagedoor.clock import ManualClock
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings
from stagedoor.web import DB, KEYS, REDIS
from ticketing.app import create_app
from ticketing.appkeys import CLOCK
from ticketing.sales.counters import GROUP, DashboardCounters, backfill_counters


def seat_map(sections: int = 1, rows: int = 10, per_row: int = 10, tiers: tuple[str, ...] = ("A",)) -> dict[str, Any]:
    """sections x rows x per_row seats; rows cycle through ``tiers``."""
    return {"sections": [
        {"name": f"S{s + 1}", "rows": [
            {"label": f"R{r + 1}", "seats": [{"number": str(n + 1), "tier": tiers[r % len(tiers)]}
                                             for n in range(per_row)]}
            for r in range(rows)]}
        for s in range(sections)]}


def event_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Test concert", "description": "a test event", "category": "concert",
        "venue": {"name": "Test Arena", "city": "Testville", "address": "1 Main St"},
        "starts_at": "2030-06-01T19:00:00Z", "ends_at": "2030-06-01T22:00:00Z", "currency": "EUR",
        "tiers": [{"code": "A", "name": "Stalls", "price": 5000}, {"code": "B", "name": "Balcony", "price": 3000}],
        "seat_map": seat_map(tiers=("A", "B")), "max_tickets_per_order": 6,
    }
    body.update(overrides)
    return body


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
def make_event(create_user: Callable[..., Any]) -> Callable[..., Any]:
    """``await make_event(client, **body_overrides)`` -> the created event's JSON (an organizer owns it)."""

    async def make(client: Any, organizer: Any = None, **overrides: Any) -> dict[str, Any]:
        organizer = organizer or await create_user(roles=["organizer"])
        resp = await client.post("/api/events", json=event_body(**overrides), headers=organizer.headers)
        assert resp.status == 201, await resp.text()
        event = await resp.json()
        event["_organizer"] = organizer
        return event

    return make


# ---------------------------------------------------------------- purchases (purchase work)
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


async def hold_seats(client: Any, user: Any, event_id: str, seats: list[str] | None = None,
                     **body: Any) -> dict[str, Any]:
    resp = await client.post(f"/api/events/{event_id}/holds", json={"seats": seats} if seats else body,
                             headers=user.headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def buy(client: Any, user: Any, hold_id: str, key: str | None = "k1", token: str = "tok_ok",
              headers: dict[str, str] | None = None, **body: Any) -> Any:
    """POST the purchase; returns the response (status not checked)."""
    all_headers = {**user.headers, **(headers or {})}
    if key is not None:
        all_headers["Idempotency-Key"] = key
    payload = {"payment": {"method": "card", "token": token}, "email": "fan@example.test", **body}
    return await client.post(f"/api/holds/{hold_id}/purchase", json=payload, headers=all_headers)


async def count_sales(app: Any) -> int:
    """The worker's share of the sales dashboard, run once: relay the outbox to the bus stream,
    run the ``dashboard`` group's consumer until it is idle, then the one-time backfill (which
    must find nothing left to count). Returns how many deliveries the consumer counted."""
    relay = OutboxRelay(app[DB], app[REDIS], app[KEYS])
    while await relay.tick():
        pass
    consumer = StreamConsumer(app[REDIS], app[KEYS], GROUP, DashboardCounters(app[DB]), block_ms=0, batch=10_000)
    counted = 0
    while handled := await consumer.run_once():
        counted += handled
    assert await backfill_counters(app[DB]) in (0, None)
    return counted
