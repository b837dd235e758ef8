"""The callers of the authorization matrix and the resources they act on.

A ``World`` holds a client, the users by role (``customer``, ``owner_org``, ...) and their
headers; the builders create, through the public API, an event of ``owner_org``, a hold of
``customer`` on it and an order of that hold, and return the ids a test's paths need.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass
class World:
    """The callers and, created on demand, the resources the rows act on."""

    client: Any
    users: dict[str, Any]
    headers: dict[str, dict[str, str]]
    ids: dict[str, str] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)  # other services' clients, for setups


def route_exists(app: Any, method: str, path_template: str) -> bool:
    """Whether ``app`` serves ``method`` on a route of that template (parameter names aside)."""
    wanted = re.sub(r"\{[^}]+\}", "{}", path_template)
    for resource in app.router.resources():
        if re.sub(r"\{[^}]+\}", "{}", resource.canonical) != wanted:
            continue
        if any(route.method in (method, "*") for route in resource):
            return True
    return False


def general_admission_event_body() -> dict[str, Any]:
    """An event in 30 days with 200 general-admission tickets, 4 per order at most."""
    starts = datetime.now(UTC) + timedelta(days=30)
    return {
        "title": "Matrix night", "description": "authorization matrix", "category": "concert",
        "venue": {"name": "Hall", "city": "Oslo", "address": "Street 1"},
        "starts_at": starts.isoformat().replace("+00:00", "Z"),
        "ends_at": (starts + timedelta(hours=3)).isoformat().replace("+00:00", "Z"),
        "currency": "EUR", "tiers": [{"code": "GA", "name": "General", "price": 2500, "quantity": 200}],
        "max_tickets_per_order": 4,
    }


async def setup_ok(resp: Any, *statuses: int) -> dict[str, Any]:
    """The JSON of a setup call's answer, which must have one of ``statuses``."""
    assert resp.status in statuses, f"setup failed: {resp.status} {await resp.text()}"
    return await resp.json()


async def make_event(world: World) -> dict[str, str]:
    body = await setup_ok(await world.client.post("/api/events", json=general_admission_event_body(),
                                                  headers=world.headers["owner_org"]), 201)
    return {"event_id": str(body["id"])}


async def make_hold(world: World) -> dict[str, str]:
    ids = await make_event(world)
    body = await setup_ok(await world.client.post(f"/api/events/{ids['event_id']}/holds",
                                                  json={"tier": "GA", "quantity": 1},
                                                  headers=world.headers["customer"]), 201)
    return {**ids, "hold_id": str(body["hold_id"])}


async def make_order(world: World) -> dict[str, str]:
    ids = await make_hold(world)
    headers = {**world.headers["customer"], "Idempotency-Key": uuid.uuid4().hex}
    body = await setup_ok(await world.client.post(
        f"/api/holds/{ids['hold_id']}/purchase", headers=headers,
        json={"payment": {"method": "card", "token": "tok_ok"}, "email": world.users["customer"].email}), 201)
    ticket = body["tickets"][0]
    return {**ids, "order_id": str(body["order_id"]), "ticket_id": str(ticket["id"]), "code": ticket["code"]}
