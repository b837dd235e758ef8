"""Purchases over HTTP on real Redis + PostgreSQL: the happy path and every refusal.

Idempotency, payment failures and the breaker are in test_payments.py; concurrency in
tests/concurrency/test_purchase_*.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stagedoor.admission_tokens import mint_admission_token
from stagedoor.clock import ManualClock
from stagedoor.web import DB, KEYS, REDIS
from tests.support.events import buy, hold_seats
from ticketing.appkeys import CLOCK
from ticketing.payments.gateway import Charge, MockGateway

PROBLEM = "application/problem+json"


async def _seat_states(client: Any, event_id: str) -> dict[str, str]:
    resp = await client.get(f"/api/events/{event_id}/seats")
    return {s["id"]: s["state"] for s in (await resp.json())["seats"]}


async def test_a_purchase_issues_tickets_in_one_transaction_and_marks_seats_sold(shop, make_event,
                                                                                 create_user) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1", "s11"])
    resp = await buy(client, fan, hold["hold_id"])
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert order["status"] == "confirmed" and order["total"] == 8000 and order["currency"] == "EUR"
    assert sorted(t["seat"] for t in order["tickets"]) == ["s1", "s11"]
    assert all(len(t["code"]) > 100 for t in order["tickets"])
    assert client.gateway.charge_count == 1
    assert next(iter(client.gateway.charges.values())).amount == 8000

    states = await _seat_states(client, event["id"])
    assert states["s1"] == states["s11"] == "sold" and states["s2"] == "free"
    db = client.app[DB]
    assert await db.fetchval("SELECT count(*) FROM tickets WHERE event_id = $1", int(event["id"])) == 2
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'OrderConfirmed' "
                             "AND aggregate_id = $1", order["order_id"]) == 1
    assert await db.fetchval("SELECT status FROM payments WHERE order_id = $1", order["order_id"]) == "succeeded"

    got = await client.get(f"/api/orders/{order['order_id']}", headers=fan.headers)
    assert got.status == 200
    body = await got.json()
    assert body["total"] == 8000 and len(body["tickets"]) == 2 and body["user_id"] == fan.id
    # the organizer and an admin may read it; another customer may not even learn it exists
    assert (await client.get(f"/api/orders/{order['order_id']}", headers=event["_organizer"].headers)).status == 200
    other = await create_user()
    resp = await client.get(f"/api/orders/{order['order_id']}", headers=other.headers)
    assert resp.status == 404 and resp.content_type == PROBLEM
    # the hold is done: the fan may hold again
    await hold_seats(client, fan, event["id"], ["s2"])


async def test_purchase_without_idempotency_key_is_422_and_charges_nothing(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    for key in (None, "", "has space", "x" * 201):
        resp = await buy(client, fan, hold["hold_id"], key=key)
        assert resp.status == 422, key
        assert (await resp.json())["type"] == "/problems/idempotency-key-required"
    assert client.gateway.calls == 0
    assert (await _seat_states(client, event["id"]))["s1"] == "held"


async def test_bad_purchase_bodies_are_4xx_and_charge_nothing(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    url = f"/api/holds/{hold['hold_id']}/purchase"
    headers = {**fan.headers, "Idempotency-Key": "k"}
    cases = [
        {"payment": {"method": "card", "token": "tok_ok"}},                                    # no email
        {"payment": {"method": "card", "token": "tok_ok"}, "email": "nope"},                   # bad email
        {"payment": {"method": "card", "token": "tok_ok"}, "email": "a\u0000b@c.d"},          # NUL
        {"payment": {"method": "card"}, "email": "a@b.c"},                                     # no token
        {"payment": {"method": "card", "token": "tok_ok"}, "email": "a@b.c", "extra": 1},      # unknown field
        {"payment": {"method": "card", "token": "tok_ok"}, "email": "a@b.c", "discount_code": "no spaces!"},
    ]
    for body in cases:
        resp = await client.post(url, json=body, headers=headers)
        assert resp.status == 422 and resp.content_type == PROBLEM, body
    assert (await client.post(url, data=b"{not json", headers={**headers, "Content-Type": "application/json"})
            ).status == 400
    assert (await client.post(url, json=cases[0])).status == 401
    assert client.gateway.calls == 0


async def test_unknown_malformed_and_foreign_holds(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)
    fan, other = await create_user(), await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    resp = await buy(client, other, hold["hold_id"])
    assert resp.status == 409 and (await resp.json())["type"] == "/problems/hold-not-yours"
    assert (await buy(client, fan, f"{event['id']}-{'0' * 24}")).status == 404
    assert (await buy(client, fan, "not-a-hold")).status == 404
    assert client.gateway.calls == 0
    # the owner can still buy with the same key the other user used (keys are per user)
    assert (await buy(client, fan, hold["hold_id"])).status == 201


async def test_an_expired_hold_is_410_and_its_seats_are_holdable_again(shop, make_event, create_user,
                                                                       manual_clock: ManualClock) -> None:
    client = await shop()
    event = await make_event(client, hold_ttl_s=30)
    fan, other = await create_user(), await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1", "s2"])
    manual_clock.advance(30_001)
    resp = await buy(client, fan, hold["hold_id"])
    assert resp.status == 410 and (await resp.json())["type"] == "/problems/hold-expired"
    assert client.gateway.calls == 0
    await hold_seats(client, other, event["id"], ["s1", "s2"])


async def test_a_released_hold_is_410(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    assert (await client.delete(f"/api/holds/{hold['hold_id']}", headers=fan.headers)).status == 204
    resp = await buy(client, fan, hold["hold_id"])
    assert resp.status == 410 and (await resp.json())["type"] == "/problems/hold-released"


class ClockAdvancingGateway(MockGateway):
    """Answers only after the hold's original expiry has passed (time moves during the charge)."""

    def __init__(self, clock: ManualClock, advance_ms: int) -> None:
        super().__init__()
        self.clock = clock
        self.advance_ms = advance_ms
        self.during: list[Any] = []

    async def charge(self, **kw: Any) -> Charge:
        self.clock.advance(self.advance_ms)
        for probe in self.during:
            await probe()
        return await super().charge(**kw)


async def test_payment_mid_flight_across_the_original_expiry_succeeds(shop, make_event, create_user,
                                                                      manual_clock: ManualClock) -> None:
    gateway = ClockAdvancingGateway(manual_clock, advance_ms=45_000)
    client = await shop(gateway=gateway, payment_window_s=120)
    event = await make_event(client, hold_ttl_s=30)
    fan, rival = await create_user(), await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    rival_status: list[int] = []

    async def rival_tries() -> None:  # 45 s later the original hold would have expired
        resp = await client.post(f"/api/events/{event['id']}/holds", json={"seats": ["s1"]}, headers=rival.headers)
        rival_status.append(resp.status)

    gateway.during.append(rival_tries)
    resp = await buy(client, fan, hold["hold_id"])
    assert resp.status == 201, await resp.text()
    assert rival_status == [409]
    assert (await _seat_states(client, event["id"]))["s1"] == "sold"


async def test_redis_said_free_postgres_said_sold_refunds_and_409(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)
    first, second = await create_user(), await create_user()
    hold = await hold_seats(client, first, event["id"], ["s1"])
    assert (await buy(client, first, hold["hold_id"])).status == 201
    # Redis forgets the sale (a stale snapshot): s1 looks free again
    redis, keys = client.app[REDIS], client.app[KEYS]
    await redis.hset(keys.inventory_seats(event["id"]), "s1", "0")
    hold2 = await hold_seats(client, second, event["id"], ["s1", "s2"])
    resp = await buy(client, second, hold2["hold_id"])
    assert resp.status == 409, await resp.text()
    problem = await resp.json()
    assert problem["type"] == "/problems/seats-already-sold"
    assert client.gateway.charge_count == 2 and len(client.gateway.refunds) == 1
    db = client.app[DB]
    assert await db.fetchval("SELECT count(*) FROM tickets WHERE seat_id = 's1'") == 1
    assert await db.fetchval("SELECT count(*) FROM tickets WHERE seat_id = 's2'") == 0
    assert await db.fetchval("SELECT status FROM payments WHERE order_id IS NULL") == "refunded"
    metrics = await (await client.get("/metrics")).text()
    assert "ticketing_oversell_prevented_total 1.0" in metrics


async def test_a_gated_event_needs_the_admission_token_to_buy(shop, make_event, create_user, keyring) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    await client.app[REDIS].set(client.app[KEYS].event_room(event["id"]), "room1")
    resp = await buy(client, fan, hold["hold_id"])
    assert resp.status == 403 and (await resp.json())["type"] == "/problems/admission-required"
    wrong, _ = mint_admission_token(keyring, visitor_id="v1", room="room1", event_id="999", ttl_s=60)
    assert (await buy(client, fan, hold["hold_id"], headers={"X-Admission-Token": wrong})).status == 403
    token, _ = mint_admission_token(keyring, visitor_id="v1", room="room1", event_id=event["id"], ttl_s=60)
    # the token counts only while its shopper session lasts (tests/abuse/test_shopper_session_end.py)
    await client.app[REDIS].zadd(client.app[KEYS].room_active("room1"), {"v1": client.app[CLOCK].now_ms() + 60_000})
    resp = await buy(client, fan, hold["hold_id"], headers={"X-Admission-Token": token})
    assert resp.status == 201, await resp.text()
    assert client.gateway.charge_count == 1


async def test_general_admission_purchase_is_bounded_by_the_tier_quantity(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client, seat_map=None, tiers=[{"code": "GA", "name": "Floor", "price": 2000,
                                                            "quantity": 3}])
    a, b = await create_user(), await create_user()
    hold = await hold_seats(client, a, event["id"], tier="GA", quantity=2)
    resp = await buy(client, a, hold["hold_id"])
    assert resp.status == 201, await resp.text()
    assert [t["seat"] for t in (await resp.json())["tickets"]] == [None, None]
    db = client.app[DB]
    assert await db.fetchval("SELECT sold FROM tier_sales WHERE event_id = $1", int(event["id"])) == 2
    # Redis forgets one sale: it offers 2 tickets, PostgreSQL's CHECK refuses the second
    await client.app[REDIS].hincrby(client.app[KEYS].inventory_tiers(event["id"]), "f:GA", 1)
    hold2 = await hold_seats(client, b, event["id"], tier="GA", quantity=2)
    resp = await buy(client, b, hold2["hold_id"])
    assert resp.status == 409 and (await resp.json())["type"] == "/problems/seats-already-sold"
    assert await db.fetchval("SELECT count(*) FROM tickets WHERE event_id = $1", int(event["id"])) == 2


async def test_the_per_account_ticket_limit_is_enforced_in_the_transaction(shop, make_event, create_user) -> None:
    client = await shop(max_tickets_per_account_per_event=2)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1", "s2"])
    assert (await buy(client, fan, hold["hold_id"], key="a")).status == 201
    hold = await hold_seats(client, fan, event["id"], ["s3"])
    resp = await buy(client, fan, hold["hold_id"], key="b")
    assert resp.status == 409 and (await resp.json())["type"] == "/problems/account-ticket-limit"
    assert len(client.gateway.refunds) == 1


async def test_selling_the_last_seat_marks_the_event_sold_out(shop, make_event, create_user) -> None:
    from tests.support.events import seat_map

    client = await shop()
    event = await make_event(client, seat_map=seat_map(rows=1, per_row=2, tiers=("A",)),
                             tiers=[{"code": "A", "name": "Stalls", "price": 100}])
    fan, other = await create_user(), await create_user()
    assert (await buy(client, fan, (await hold_seats(client, fan, event["id"], ["s1"]))["hold_id"])).status == 201
    db = client.app[DB]
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'SoldOut'") == 0
    assert (await buy(client, other, (await hold_seats(client, other, event["id"], ["s2"]))["hold_id"])).status == 201
    for _ in range(100):  # checked off the request path, every sold_out_check_interval_ms
        if await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'SoldOut'"):
            break
        await asyncio.sleep(0.05)
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'SoldOut'") == 1
    assert await db.fetchval("SELECT status FROM events WHERE id = $1", int(event["id"])) == "sold_out"
