"""Events, holds and purchases over the ticketing HTTP API.

``make_event(client, **body_overrides)`` (a fixture) creates an event through POST /api/events
as an organizer and returns its JSON; ``event_body(...)`` and ``seat_map(...)`` build such a
body; ``hold_seats`` and ``buy`` place a hold and purchase it as a user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


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
    # a Stripe PaymentMethod goes as payment_method (what the checkout page sends), a mock token as token
    payment = {"method": "card", "payment_method" if token.startswith("pm_") else "token": token}
    payload = {"payment": payment, "email": "fan@example.test", **body}
    return await client.post(f"/api/holds/{hold_id}/purchase", json=payload, headers=all_headers)
