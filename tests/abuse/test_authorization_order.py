"""Authorization as an attacker tries it, over HTTP (real Redis and PostgreSQL).

- An API client carries its owner's roles narrowed by its scopes: a door scanner (scope
  ``checkin``) registered for an admin checks tickets in and is refused everything else (events,
  holds, purchases, rooms) with 403 before anything is looked up, and the stores are unchanged.
- Authorization before lookup: ``POST /api/checkin`` by a caller who may check in at no event
  is 403 whatever the code (forged, genuine, their own ticket, even an invalid body), with one
  answer; an organizer checking in another event's genuine code gets the answer of a forged code.
- Admin rooms: a caller who may manage no room gets 403 before any room lookup; an organizer
  asking for another organizer's room gets the very answer of a missing room.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from stagedoor.keys import KeyRing
from tests.support.accounts import FAST_ACCOUNTS
from tests.support.authz import client_headers, problem_shape
from tests.support.events import buy, hold_seats
from tests.support.rooms import iso
from ticketing.tickets.codes import sign_ticket_code

FORBIDDEN = "/problems/forbidden"


def _room_body(event_id: str, **kw: Any) -> dict[str, Any]:
    body = {"event_id": event_id, "mode": "fifo", "opens_at": iso(-60), "starts_at": iso(-30), "rate_per_s": 5,
            "max_active": 100, "session_ttl_s": 300, "abandon_after_s": 0, "shop_url": "https://shop.example/"}
    body.update(kw)
    return body


def _config(room: dict[str, Any]) -> dict[str, Any]:
    """A room's configuration as the admin API shows it (live counters left out)."""
    live = {"waiting", "active", "admitted_total", "abandoned_total", "finished_total", "admit_rate_observed",
            "sold_out", "all_held", "tickets_free", "tickets_held", "rate_current_per_s"}
    return {k: v for k, v in room.items() if k not in live}


async def _services(service_client: Callable[..., Any], make_settings: Callable[..., Any]) -> tuple[Any, Any]:
    settings = make_settings(**FAST_ACCOUNTS)
    return await service_client("ticketing", settings), await service_client("admission", settings)


async def _sold_code(shop: Any, create_user: Callable[..., Any], event_id: str, seat: str) -> tuple[str, str]:
    """(ticket id, code) of a ticket a new fan bought for ``seat``."""
    buyer = await create_user()
    hold = await hold_seats(shop, buyer, event_id, [seat])
    resp = await buy(shop, buyer, hold["hold_id"], key=uuid.uuid4().hex)
    assert resp.status == 201, await resp.text()
    ticket = (await resp.json())["tickets"][0]
    return ticket["id"], ticket["code"]


async def _event_row(db: asyncpg.Pool, event_id: str) -> tuple[Any, ...]:
    row = await db.fetchrow("SELECT title, description, status, max_tickets_per_order FROM events WHERE id = $1",
                            int(event_id))
    assert row is not None
    cancelled = await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'EventCancelled' "
                                  "AND aggregate_id = $1", event_id)
    return (*row.values(), cancelled)


async def _seat_states(shop: Any, event_id: str) -> dict[str, str]:
    resp = await shop.get(f"/api/events/{event_id}/seats")
    assert resp.status == 200
    return {s["id"]: s["state"] for s in (await resp.json())["seats"]}


async def test_a_checkin_scoped_client_of_an_admin_checks_in_and_is_refused_everything_else(
        service_client: Any, make_settings: Any, make_event: Any, create_user: Any, admin_headers: dict[str, str],
        db: asyncpg.Pool) -> None:
    shop, adm = await _services(service_client, make_settings)
    admin, fan = await create_user(roles=["admin"]), await create_user()
    scanner = await client_headers(shop, admin.id, ["checkin"])
    event = await make_event(shop)
    ev = event["id"]
    hold = await hold_seats(shop, fan, ev, ["s1"])
    _ticket_id, code = await _sold_code(shop, create_user, ev, "s2")
    gated = await make_event(shop, event["_organizer"])
    room = f"r{uuid.uuid4().hex[:10]}"
    assert (await adm.put(f"/admin/rooms/{room}", json=_room_body(gated["id"]), headers=admin_headers)).status == 201
    room_before = _config(await (await adm.get(f"/admin/rooms/{room}", headers=admin_headers)).json())
    event_before = await _event_row(db, ev)
    seats_before = await _seat_states(shop, ev)
    assert seats_before["s1"] == "held" and seats_before["s2"] == "sold"

    async def refused(resp: Any) -> None:
        assert resp.status == 403, await resp.text()
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["type"] == FORBIDDEN

    # events: no mass cancellation, no edits (a missing event answers the same: nothing was looked up)
    for event_id in (ev, "99999999"):
        await refused(await shop.patch(f"/api/events/{event_id}", json={"title": "Refund all", "status": "sold_out"},
                                       headers=scanner))
        await refused(await shop.delete(f"/api/events/{event_id}", headers=scanner))
    assert await _event_row(db, ev) == event_before
    # holds: neither read nor released nor bought, and an unknown hold id answers the same
    for hold_id in (hold["hold_id"], f"{ev}-{'0' * 24}"):
        await refused(await shop.get(f"/api/holds/{hold_id}", headers=scanner))
        await refused(await shop.delete(f"/api/holds/{hold_id}", headers=scanner))
        await refused(await shop.post(f"/api/holds/{hold_id}/purchase", json={
            "payment": {"method": "card", "token": "tok_ok"}, "email": "x@example.test"},
            headers={**scanner, "Idempotency-Key": uuid.uuid4().hex}))
    mine = await shop.get(f"/api/holds/{hold['hold_id']}", headers=fan.headers)
    assert mine.status == 200 and (await mine.json())["state"] == "held"
    assert await _seat_states(shop, ev) == seats_before
    # rooms: every admin endpoint, for the real room and a missing one alike
    for name in (room, "no-such-room"):
        await refused(await adm.get(f"/admin/rooms/{name}", headers=scanner))
        await refused(await adm.put(f"/admin/rooms/{name}", json=_room_body(gated["id"], mode="closed"),
                                    headers=scanner))
        await refused(await adm.patch(f"/admin/rooms/{name}", json={"rate_per_s": 999}, headers=scanner))
        await refused(await adm.post(f"/admin/rooms/{name}/pause", headers=scanner))
        await refused(await adm.post(f"/admin/rooms/{name}/resume", headers=scanner))
        await refused(await adm.delete(f"/admin/rooms/{name}/visitors/1_abcdef", headers=scanner))
        await refused(await adm.delete(f"/admin/rooms/{name}", headers=scanner))
    await refused(await adm.get("/admin/rooms", headers=scanner))
    after = await adm.get(f"/admin/rooms/{room}", headers=admin_headers)
    assert after.status == 200 and _config(await after.json()) == room_before
    # control: the scanner's owner, with the same requests, is let through (the refusals above
    # come from the client's scope, not from the endpoints or the ids)
    assert (await shop.get(f"/api/holds/{hold['hold_id']}", headers=admin.headers)).status == 200
    assert (await adm.get(f"/admin/rooms/{room}", headers=admin.headers)).status == 200
    owners = await shop.patch(f"/api/events/{ev}", json={"description": "checked by the admin"}, headers=admin.headers)
    assert owners.status == 200, await owners.text()
    # ... and the scanner does what it is for: checking tickets in, at any event (its owner is an admin)
    first = await shop.post("/api/checkin", json={"code": code}, headers=scanner)
    assert first.status == 200, await first.text()
    assert (await shop.post("/api/checkin", json={"code": code}, headers=scanner)).status == 409


async def test_a_clients_rights_are_its_owners_roles_narrowed_by_its_scopes(
        service_client: Any, make_settings: Any, make_event: Any, create_user: Any, db: asyncpg.Pool) -> None:
    shop, _adm = await _services(service_client, make_settings)
    admin, org, rival = (await create_user(roles=["admin"]), await create_user(roles=["organizer"]),
                         await create_user(roles=["organizer"]))
    event = await make_event(shop, org)
    path = f"/api/events/{event['id']}"
    admins_writer = await client_headers(shop, admin.id, ["events:write"])
    resp = await shop.patch(path, json={"description": "by the admin's automation"}, headers=admins_writer)
    assert resp.status == 200, await resp.text()
    # the same client may not read holds (no scope opens them) ...
    fan = await create_user()
    hold = await hold_seats(shop, fan, event["id"], ["s3"])
    assert (await shop.get(f"/api/holds/{hold['hold_id']}", headers=admins_writer)).status == 403
    # ... and an organizer's client with every scope is still only that organizer
    rivals_all = await client_headers(shop, rival.id, ["admin"])
    before = await _event_row(db, event["id"])
    refused = await shop.patch(path, json={"description": "mine now"}, headers=rivals_all)
    assert refused.status == 403 and (await refused.json())["type"] == "/problems/not-event-owner"
    assert (await shop.delete(path, headers=rivals_all)).status == 403
    assert (await shop.get("/api/users", headers=rivals_all)).status == 403
    assert await _event_row(db, event["id"]) == before
    orgs_scanner = await client_headers(shop, org.id, ["checkin"])
    assert (await shop.patch(path, json={"description": "x"}, headers=orgs_scanner)).status == 403
    assert await _event_row(db, event["id"]) == before


async def test_checkin_by_a_customer_is_403_whatever_the_code(
        service_client: Any, make_settings: Any, make_event: Any, create_user: Any, keyring: KeyRing,
        db: asyncpg.Pool) -> None:
    shop, _adm = await _services(service_client, make_settings)
    event_a, event_b = await make_event(shop), await make_event(shop)
    _own_id, own_code = await _sold_code(shop, create_user, event_a["id"], "s1")
    _other_id, other_code = await _sold_code(shop, create_user, event_b["id"], "s1")
    customer = await create_user()
    hold = await hold_seats(shop, customer, event_a["id"], ["s5"])
    bought = await buy(shop, customer, hold["hold_id"], key=uuid.uuid4().hex)
    customers_code = (await bought.json())["tickets"][0]["code"]
    never_sold = sign_ticket_code(keyring, str(uuid.uuid4()), event_b["id"], 4_000_000_000)
    bodies: list[Any] = [{"code": c} for c in (other_code, own_code, customers_code, never_sold, "forged.code.x",
                                               "garbage")]
    bodies += [{}, {"code": ""}, {"code": own_code, "extra": 1}]  # refused before the body is even read
    shapes = set()
    for body in bodies:
        resp = await shop.post("/api/checkin", json=body, headers=customer.headers)
        status, ctype, problem = await problem_shape(resp)
        assert status == 403 and problem["type"] == FORBIDDEN, (body, problem)
        shapes.add((status, ctype, tuple(sorted(problem.items()))))
    assert len(shapes) == 1, shapes  # one answer: nothing tells a real code from a forged one
    assert await db.fetchval("SELECT count(*) FROM tickets WHERE checked_in_at IS NOT NULL") == 0


async def test_an_organizer_checking_in_another_events_code_gets_the_answer_of_a_forged_code(
        service_client: Any, make_settings: Any, make_event: Any, create_user: Any, keyring: KeyRing,
        db: asyncpg.Pool) -> None:
    shop, _adm = await _services(service_client, make_settings)
    event_a, event_b = await make_event(shop), await make_event(shop)
    organizer_a = event_a["_organizer"]
    other_id, other_code = await _sold_code(shop, create_user, event_b["id"], "s1")
    forged = other_code[:-2] + ("AA" if not other_code.endswith("AA") else "BB")
    never_sold = sign_ticket_code(keyring, str(uuid.uuid4()), event_a["id"], 4_000_000_000)
    shapes = []
    for code in (other_code, forged, never_sold, "garbage"):
        resp = await shop.post("/api/checkin", json={"code": code}, headers=organizer_a.headers)
        shapes.append(await problem_shape(resp))
    status, ctype, problem = shapes[0]
    assert status == 404 and ctype == "application/problem+json" and problem["type"] == "/problems/ticket-not-found"
    assert all(shape == shapes[0] for shape in shapes), shapes
    # the ticket was not touched: its own organizer checks it in once
    assert await db.fetchval("SELECT checked_in_at FROM tickets WHERE id = $1::uuid", other_id) is None
    organizer_b = event_b["_organizer"]
    assert (await shop.post("/api/checkin", json={"code": other_code}, headers=organizer_b.headers)).status == 200
    # an organizer's door scanner (scope checkin) is held to the same rule
    scanner_a = await client_headers(shop, organizer_a.id, ["checkin"])
    resp = await shop.post("/api/checkin", json={"code": other_code}, headers=scanner_a)
    assert await problem_shape(resp) == shapes[0]


async def test_admin_rooms_answer_another_organizers_room_as_a_missing_one(
        service_client: Any, make_settings: Any, make_event: Any, create_user: Any, admin_headers: dict[str, str]
) -> None:
    shop, adm = await _services(service_client, make_settings)
    event_a, event_b = await make_event(shop), await make_event(shop)
    organizer_a, organizer_b = event_a["_organizer"], event_b["_organizer"]
    theirs = f"b{uuid.uuid4().hex[:10]}"
    created = await adm.put(f"/admin/rooms/{theirs}", json=_room_body(event_b["id"]), headers=organizer_b.headers)
    assert created.status == 201, await created.text()
    before = _config(await created.json())
    missing = f"m{uuid.uuid4().hex[:10]}"
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/admin/rooms/{}", None), ("PATCH", "/admin/rooms/{}", {"rate_per_s": 999}),
        ("PATCH", "/admin/rooms/{}", {"event_id": event_a["id"]}), ("POST", "/admin/rooms/{}/pause", None),
        ("POST", "/admin/rooms/{}/resume", None), ("DELETE", "/admin/rooms/{}/visitors/1_abcdef", None),
        ("DELETE", "/admin/rooms/{}", None),
    ]
    for method, template, body in calls:
        answers = []
        for name in (theirs, missing):
            resp = await adm.request(method, template.format(name), json=body, headers=organizer_a.headers)
            answers.append(await problem_shape(resp, replace=(name, "ROOM")))
        assert answers[0] == answers[1], (method, template, answers)
        assert answers[0][0] == 404 and answers[0][2]["type"] == "/problems/room-not-found", answers[0]
    # a caller who may manage no room: 403 before any lookup, the same for both
    customer = await create_user()
    for method, template, body in calls:
        answers = [await problem_shape(await adm.request(method, template.format(name), json=body,
                                                         headers=customer.headers), replace=(name, "ROOM"))
                   for name in (theirs, missing)]
        assert answers[0] == answers[1] and answers[0][0] == 403 and answers[0][2]["type"] == FORBIDDEN, answers
    listed = await adm.get("/admin/rooms", headers=organizer_a.headers)
    assert listed.status == 200 and theirs not in {r["room"] for r in (await listed.json())["items"]}
    # PUT creates: taking over another organizer's room id, or gating their event, is refused
    assert (await adm.put(f"/admin/rooms/{theirs}", json=_room_body(event_a["id"]),
                          headers=organizer_a.headers)).status == 403
    assert (await adm.put(f"/admin/rooms/{missing}", json=_room_body(event_b["id"]),
                          headers=organizer_a.headers)).status == 403
    after = await adm.get(f"/admin/rooms/{theirs}", headers=organizer_b.headers)
    assert after.status == 200 and _config(await after.json()) == before
    assert (await adm.get(f"/admin/rooms/{missing}", headers=admin_headers)).status == 404
