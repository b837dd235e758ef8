"""The waiting list after sold out, over HTTP and through the worker's offering (real Redis and
PostgreSQL; the offering is the worker's own class, driven turn by turn on the shop's clock).

The scene: an event of 3 general-admission tickets; 2 are bought, 1 is in a basket when the
organizer marks the event sold out. When that basket's hold expires the ticket has come back,
and only the waiting list may have it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import pytest

from rooms.store import RoomConfig, RoomStore, room_from_config
from stagedoor.bus_envelope import Envelope
from stagedoor.bus_events import EventUpdated, decode_payload
from stagedoor.clock import ManualClock
from stagedoor.web import CALLS, DB, KEYS, SETTINGS
from tests.support.events import buy, hold_seats, seat_map
from ticketing.appkeys import CLOCK, INVENTORY, METRICS, PURCHASES
from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.waitlist.offering import WaitlistOffering, WaitlistSignals
from ticketing.waitlist.store import WaitlistStore
from ticketing.worker import create_worker_app

GA = [{"code": "G", "name": "Floor", "price": 4000, "quantity": 3}]
HOLD_TTL_S = 30
OFFER_TTL_S = 60


def offering(shop: Any, clock: ManualClock) -> WaitlistOffering:
    """The worker's offering over the shop app's stores (what ticketing.waitlist.routes.waitlist_worker_ctx builds)."""
    app = shop.app
    return WaitlistOffering(WaitlistStore(app[DB]), app[INVENTORY], AdmissionHooks(app[CALLS], app[KEYS]),
                            app[SETTINGS], app[METRICS], clock)


async def problem(resp: Any) -> tuple[int, str]:
    assert resp.content_type == "application/problem+json", await resp.text()
    return resp.status, (await resp.json())["type"]


async def tiers(shop: Any, event_id: str) -> dict[str, int]:
    detail = await (await shop.get(f"/api/events/{event_id}")).json()
    return {t["code"]: t["available"] for t in detail["tiers"]}


async def sold_out_with_a_basket(shop: Any, make_event: Any, create_user: Any, **event: Any) -> tuple[dict[str, Any],
                                                                                                    dict[str, Any]]:
    """An event sold out by its organizer while one ticket is still in a basket (returns (event, that hold))."""
    body: dict[str, Any] = {"tiers": GA, "seat_map": None, "hold_ttl_s": HOLD_TTL_S}
    body.update(event)
    ev = await make_event(shop, **body)
    buyer, basket = await create_user(), await create_user()
    bought = await hold_seats(shop, buyer, ev["id"], tier="G", quantity=2)
    assert (await buy(shop, buyer, bought["hold_id"])).status == 201
    held = await hold_seats(shop, basket, ev["id"], tier="G", quantity=1)
    resp = await shop.patch(f"/api/events/{ev['id']}", json={"status": "sold_out"}, headers=ev["_organizer"].headers)
    assert resp.status == 200, await resp.text()
    return ev, held


async def gate(shop: Any, event_id: str, clock: ManualClock, room: str = "show") -> RoomStore:
    """A waiting room gating the event, marked sold out as the sell-out marks it."""
    rooms = RoomStore(shop.app[CALLS], shop.app[KEYS])
    now_ms = clock.now_ms()
    await rooms.put(room_from_config(room, RoomConfig(event_id=event_id, rate_per_s=10.0, max_active=10), now_ms),
                    now_ms)
    await rooms.set_sold_out(room, True, now_ms)
    return rooms


async def join(shop: Any, user: Any, event_id: str, quantity: int | None = None) -> Any:
    body = {} if quantity is None else {"quantity": quantity}
    return await shop.post(f"/api/events/{event_id}/waitlist", json=body, headers=user.headers)


async def offered(shop: Any, worker: WaitlistOffering, event_id: str, user: Any) -> dict[str, Any]:
    """One turn of the offering; then ``user``'s one offer."""
    await worker.offer_returns(int(event_id))
    [offer] = (await (await shop.get("/api/users/me/offers", headers=user.headers)).json())["items"]
    return dict(offer)


@pytest.fixture
async def waitlist_shop(shop: Any) -> Any:
    return await shop(waitlist_offer_ttl_s=OFFER_TTL_S)


async def test_joining_needs_a_signed_in_account_and_a_sold_out_event(waitlist_shop: Any, make_event: Any,
                                                                       create_user: Any, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev = await make_event(shop, tiers=GA, seat_map=None)
    fan = await create_user()
    assert (await shop.post(f"/api/events/{ev['id']}/waitlist", json={})).status == 401
    assert await problem(await join(shop, fan, ev["id"])) == (409, "/problems/event-not-sold-out")
    assert await problem(await join(shop, fan, "999999")) == (404, "/problems/event-not-found")
    draft = await make_event(shop, tiers=GA, seat_map=None, draft=True)
    assert await problem(await join(shop, fan, draft["id"])) == (404, "/problems/event-not-found")
    assert await db.fetchval("SELECT count(*) FROM waitlist_entries") == 0  # refusals wrote nothing


async def test_join_answers_the_position_409_when_on_it_and_delete_leaves(waitlist_shop: Any, make_event: Any,
                                                                          create_user: Any, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev, _ = await sold_out_with_a_basket(shop, make_event, create_user)
    first, second = await create_user(), await create_user()
    resp = await join(shop, first, ev["id"])
    assert resp.status == 201
    assert await resp.json() == {"position": 1, "quantity": 1}
    resp = await join(shop, second, ev["id"], quantity=2)
    assert (resp.status, (await resp.json())["position"]) == (201, 2)
    assert await problem(await join(shop, first, ev["id"])) == (409, "/problems/already-on-waitlist")
    standing = await (await shop.get(f"/api/events/{ev['id']}/waitlist", headers=second.headers)).json()
    assert standing == {"state": "waiting", "quantity": 2, "position": 2}
    assert (await shop.delete(f"/api/events/{ev['id']}/waitlist", headers=first.headers)).status == 204
    assert await problem(await shop.delete(f"/api/events/{ev['id']}/waitlist",
                                           headers=first.headers)) == (404, "/problems/not-on-waitlist")
    standing = await (await shop.get(f"/api/events/{ev['id']}/waitlist", headers=second.headers)).json()
    assert standing["position"] == 1
    resp = await join(shop, first, ev["id"])  # joining again after leaving: last in line
    assert (resp.status, (await resp.json())["position"]) == (201, 2)
    assert await db.fetchval("SELECT count(*) FROM waitlist_entries WHERE event_id = $1", int(ev["id"])) == 2


async def test_over_the_per_order_limit_is_refused_and_nothing_is_written(waitlist_shop: Any, make_event: Any,
                                                                         create_user: Any, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev, _ = await sold_out_with_a_basket(shop, make_event, create_user, max_tickets_per_order=2)
    fan = await create_user()
    assert await problem(await join(shop, fan, ev["id"], quantity=3)) == (422, "/problems/invalid-hold-request")
    assert await problem(await join(shop, fan, ev["id"], quantity=0)) == (422, "/problems/validation-failed")
    assert await db.fetchval("SELECT count(*) FROM waitlist_entries") == 0


async def test_returned_tickets_are_offered_in_list_order_and_nobody_else_can_hold_them(
        waitlist_shop: Any, make_event: Any, create_user: Any, manual_clock: ManualClock, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev, held = await sold_out_with_a_basket(shop, make_event, create_user)
    first, second = await create_user(), await create_user()
    await join(shop, first, ev["id"])
    await join(shop, second, ev["id"])
    worker = offering(shop, manual_clock)
    assert (await worker.offer_returns(int(ev["id"]))).offered == []  # nothing came back yet

    manual_clock.advance(HOLD_TTL_S * 1000)  # the basket's hold expires: its ticket is back
    skipper = await create_user()
    holds_before = await db.fetchval("SELECT count(*) FROM waitlist_offers")
    resp = await shop.post(f"/api/events/{ev['id']}/holds", json={"tier": "G", "quantity": 1},
                           headers=skipper.headers)
    assert await problem(resp) == (409, "/problems/event-not-on-sale")
    records = shop.app[INVENTORY].holds
    assert (await records.tier_counts(ev["id"]))["G"].free == 0  # not even reclaimed by the refused hold
    assert (await records.get_hold(held["hold_id"])).state == "held"
    assert await db.fetchval("SELECT count(*) FROM waitlist_offers") == holds_before

    offer = await offered(shop, worker, ev["id"], first)
    offers = await (await shop.get("/api/users/me/offers", headers=first.headers)).json()
    [offer] = offers["items"]
    assert (offer["event_id"], offer["quantity"], offer["state"]) == (ev["id"], 1, "pending")
    expires = dt.datetime.fromisoformat(offer["expires_at"])
    assert expires.timestamp() * 1000 == manual_clock.now_ms() + OFFER_TTL_S * 1000
    assert (await (await shop.get("/api/users/me/offers", headers=second.headers)).json())["items"] == []
    standing = await (await shop.get(f"/api/events/{ev['id']}/waitlist", headers=second.headers)).json()
    assert standing == {"state": "waiting", "quantity": 1, "position": 1}
    resp = await shop.post(f"/api/events/{ev['id']}/holds", json={"tier": "G", "quantity": 1},
                           headers=skipper.headers)
    assert await problem(resp) == (409, "/problems/event-not-on-sale")
    assert (await worker.offer_returns(int(ev["id"]))).offered == []  # one ticket, offered once
    row = await db.fetchrow("SELECT event_type, payload FROM outbox WHERE event_type = 'WaitlistOfferMade'")
    assert row is not None and offer["id"] in row["payload"]


async def test_an_expired_offer_passes_to_the_next_fan(waitlist_shop: Any, make_event: Any, create_user: Any,
                                                       manual_clock: ManualClock, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev, _ = await sold_out_with_a_basket(shop, make_event, create_user)
    first, second = await create_user(), await create_user()
    await join(shop, first, ev["id"])
    await join(shop, second, ev["id"])
    worker = offering(shop, manual_clock)
    manual_clock.advance(HOLD_TTL_S * 1000)
    offer = await offered(shop, worker, ev["id"], first)

    manual_clock.advance(OFFER_TTL_S * 1000)  # the first fan lets it lapse
    assert await problem(await shop.post(f"/api/offers/{offer['id']}/accept",
                                         headers=first.headers)) == (410, "/problems/offer-expired")
    nxt = await offered(shop, worker, ev["id"], second)
    assert nxt["id"] != offer["id"]
    assert (await (await shop.get("/api/users/me/offers", headers=first.headers)).json())["items"] == []
    statuses = dict(await db.fetch("SELECT user_id::text, status FROM waitlist_offers"))
    assert statuses == {first.id: "expired", second.id: "pending"}
    standing = await (await shop.get(f"/api/events/{ev['id']}/waitlist", headers=first.headers)).json()
    assert standing["state"] == "done"


async def test_an_accepted_offer_is_bought_through_the_ordinary_purchase_without_admission(
        waitlist_shop: Any, make_event: Any, create_user: Any, manual_clock: ManualClock, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev, _ = await sold_out_with_a_basket(shop, make_event, create_user)
    # the event is gated by a waiting room: ordinary purchases need an admission token, an offer's does not
    await gate(shop, ev["id"], manual_clock)
    fan, other = await create_user(), await create_user()
    await join(shop, fan, ev["id"], quantity=2)
    worker = offering(shop, manual_clock)
    manual_clock.advance(HOLD_TTL_S * 1000)
    offer = await offered(shop, worker, ev["id"], fan)
    assert offer["quantity"] == 1  # wanted 2, one came back

    assert await problem(await shop.post(f"/api/offers/{offer['id']}/accept",
                                         headers=other.headers)) == (404, "/problems/offer-not-found")
    assert await problem(await shop.post(f"/api/offers/{uuid.uuid4()}/accept",
                                         headers=fan.headers)) == (404, "/problems/offer-not-found")
    resp = await shop.post(f"/api/offers/{offer['id']}/accept", headers=fan.headers)
    assert resp.status == 201, await resp.text()
    hold = await resp.json()
    assert (hold["event_id"], hold["tier"], hold["quantity"], hold["state"], hold["total"]) == \
        (ev["id"], "G", 1, "held", 4000)
    again = await shop.post(f"/api/offers/{offer['id']}/accept", headers=fan.headers)
    assert (again.status, (await again.json())["hold_id"]) == (201, hold["hold_id"])
    assert await problem(await buy(shop, other, hold["hold_id"], key="k-other")) == (409, "/problems/hold-not-yours")
    resp = await buy(shop, fan, hold["hold_id"], key="k-offer")
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert len(order["tickets"]) == 1

    await worker.offer_returns(int(ev["id"]))  # the turn sees the hold sold
    assert await db.fetchval("SELECT status FROM waitlist_offers WHERE id = $1::uuid", offer["id"]) == "bought"
    org = ev["_organizer"]
    stats = await (await shop.get(f"/api/events/{ev['id']}/waitlist/stats", headers=org.headers)).json()
    assert stats == {"event_id": ev["id"], "length": 0, "offers_open": 0, "offers_made": 1, "offers_accepted": 1,
                     "offers_bought": 1, "offers_expired": 0, "tickets_bought": 1, "conversion": 1.0}
    assert await db.fetchval("SELECT count(*) FROM tickets WHERE event_id = $1", int(ev["id"])) == 3
    assert (await shop.get(f"/api/events/{ev['id']}/waitlist/stats", headers=fan.headers)).status == 403
    rival = await create_user(roles=["organizer"])
    assert (await shop.get(f"/api/events/{ev['id']}/waitlist/stats", headers=rival.headers)).status == 403


async def test_with_nobody_waiting_returned_tickets_put_the_event_back_on_sale(
        waitlist_shop: Any, make_event: Any, create_user: Any, manual_clock: ManualClock, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev, _ = await sold_out_with_a_basket(shop, make_event, create_user)
    rooms = await gate(shop, ev["id"], manual_clock)
    assert (await rooms.stats("show", manual_clock.now_ms(), 10_000)).sold_out
    worker = offering(shop, manual_clock)
    manual_clock.advance(HOLD_TTL_S * 1000)
    fan = await create_user()
    run = await worker.offer_returns(int(ev["id"]))
    assert run.back_on_sale and run.offered == []
    assert not (await rooms.stats("show", manual_clock.now_ms(), 10_000)).sold_out  # the queue resumes
    assert await db.fetchval("SELECT status FROM events WHERE id = $1", int(ev["id"])) == "on_sale"
    [row] = await db.fetch("SELECT event_id::text, payload FROM outbox WHERE event_type = 'EventUpdated' "
                           "AND aggregate_id = $1 AND payload->>'status' = 'on_sale'", ev["id"])
    announced = decode_payload(Envelope(event_id=row["event_id"], event_type="EventUpdated", event_version=1,
                                        aggregate_id=ev["id"], payload=json.loads(row["payload"]), created_at_ms=0))
    assert isinstance(announced, EventUpdated)  # what the read model and the notifications decode
    assert (announced.event_id, announced.fields, announced.status) == (ev["id"], ["status"], "on_sale")
    assert announced.starts_at.startswith(ev["starts_at"][:19])
    assert await tiers(shop, ev["id"]) == {"G": 1}
    resp = await shop.post(f"/api/events/{ev['id']}/holds", json={"tier": "G", "quantity": 1}, headers=fan.headers)
    assert await problem(resp) == (403, "/problems/admission-required")  # again: through the queue only
    assert await problem(await join(shop, fan, ev["id"])) == (409, "/problems/event-not-sold-out")


async def test_the_sell_out_marks_the_inventory_sold_out_and_a_refund_free_ticket_cannot_be_grabbed(
        waitlist_shop: Any, make_event: Any, create_user: Any, manual_clock: ManualClock, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev = await make_event(shop, tiers=[{"code": "G", "name": "Floor", "price": 4000, "quantity": 2}], seat_map=None)
    fan = await create_user()
    hold = await hold_seats(shop, fan, ev["id"], tier="G", quantity=2)
    assert (await buy(shop, fan, hold["hold_id"])).status == 201
    assert await shop.app[PURCHASES].sold_out.announce(ev["id"], None, manual_clock.now_ms())
    assert await db.fetchval("SELECT status FROM events WHERE id = $1", int(ev["id"])) == "sold_out"
    meta = shop.app[KEYS].inventory_meta(ev["id"])
    assert await shop.app[CALLS].redis.hget(meta, "status") == b"sold_out"
    assert await shop.app[PURCHASES].sold_out.announce(ev["id"], None, manual_clock.now_ms())  # again: no change
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'SoldOut'") == 1
    fan2 = await create_user()
    assert (await join(shop, fan2, ev["id"])).status == 201


async def test_a_cancelled_event_closes_its_list_and_voids_open_offers(
        waitlist_shop: Any, make_event: Any, create_user: Any, manual_clock: ManualClock, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev, _ = await sold_out_with_a_basket(shop, make_event, create_user)
    fan, later = await create_user(), await create_user()
    await join(shop, fan, ev["id"])
    await join(shop, later, ev["id"])
    worker = offering(shop, manual_clock)
    manual_clock.advance(HOLD_TTL_S * 1000)
    offer = await offered(shop, worker, ev["id"], fan)
    assert (await shop.delete(f"/api/events/{ev['id']}", headers=ev["_organizer"].headers)).status == 200
    run = await worker.offer_returns(int(ev["id"]))
    assert run.closed == 1
    assert dict(await db.fetch("SELECT user_id::text, status FROM waitlist_entries")) == {fan.id: "left",
                                                                                          later.id: "left"}
    assert await db.fetchval("SELECT status FROM waitlist_offers WHERE id = $1::uuid", offer["id"]) == "void"
    assert await problem(await shop.post(f"/api/offers/{offer['id']}/accept",
                                         headers=fan.headers)) == (410, "/problems/offer-expired")


async def test_leaving_with_a_pending_offer_gives_the_tickets_to_the_next_fan(
        waitlist_shop: Any, make_event: Any, create_user: Any, manual_clock: ManualClock, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev, _ = await sold_out_with_a_basket(shop, make_event, create_user)
    fan, nxt = await create_user(), await create_user()
    await join(shop, fan, ev["id"])
    await join(shop, nxt, ev["id"])
    worker = offering(shop, manual_clock)
    manual_clock.advance(HOLD_TTL_S * 1000)
    offer = await offered(shop, worker, ev["id"], fan)
    assert (await shop.delete(f"/api/events/{ev['id']}/waitlist", headers=fan.headers)).status == 204
    assert await db.fetchval("SELECT status FROM waitlist_offers WHERE id = $1::uuid", offer["id"]) == "void"
    second = await offered(shop, worker, ev["id"], nxt)
    assert second["quantity"] == 1


async def test_two_workers_offering_at_once_offer_each_returned_ticket_once_and_the_unguarded_control_twice(
        waitlist_shop: Any, make_event: Any, create_user: Any, manual_clock: ManualClock, db: asyncpg.Pool) -> None:
    shop = waitlist_shop
    ev, _ = await sold_out_with_a_basket(shop, make_event, create_user)
    fans = [await create_user() for _ in range(4)]
    for fan in fans:
        await join(shop, fan, ev["id"])
    manual_clock.advance(HOLD_TTL_S * 1000)
    await shop.app[INVENTORY].holds.sweep_expired(ev["id"], manual_clock.now_ms())  # the ticket is back
    holds = shop.app[INVENTORY].holds
    assert (await holds.tier_counts(ev["id"]))["G"].free == 1

    # control: read the free count, then offer, without the script and the lock: both offer the one ticket
    async def unguarded(entry_user: str) -> None:
        free = (await holds.tier_counts(ev["id"]))["G"].free
        await asyncio.sleep(0.01)  # the other worker reads meanwhile
        if free > 0:
            entry = await db.fetchval("SELECT id FROM waitlist_entries WHERE user_id = $1::uuid", entry_user)
            await db.execute(
                "INSERT INTO waitlist_offers (id, event_id, entry_id, user_id, hold_id, quantity, expires_at) "
                "VALUES ($1, $2, $3, $4::uuid, $5, 1, now())", uuid.uuid4(), int(ev["id"]), entry, entry_user,
                f"control-{entry_user}")

    await asyncio.gather(unguarded(fans[0].id), unguarded(fans[1].id))
    assert await db.fetchval("SELECT count(*) FROM waitlist_offers") == 2  # one ticket, two offers
    await db.execute("DELETE FROM waitlist_offers")

    workers = [offering(shop, manual_clock) for _ in range(4)]
    runs = await asyncio.gather(*(w.offer_returns(int(ev["id"])) for w in workers))
    assert sum(len(r.offered) for r in runs) == 1
    assert await db.fetchval("SELECT count(*) FROM waitlist_offers") == 1
    assert await db.fetchval("SELECT user_id::text FROM waitlist_offers") == fans[0].id
    assert (await holds.tier_counts(ev["id"]))["G"].free == 0


async def test_the_waitlist_signals_note_events_for_the_offering(waitlist_shop: Any, manual_clock: ManualClock) -> None:
    worker = offering(waitlist_shop, manual_clock)
    signals = WaitlistSignals(worker)
    for event_type, payload, aggregate in (("BookingExpired", {"event_id": "7", "hold_id": "7-x"}, "7-x"),
                                           ("OrderRefunded", {"event_id": "8"}, "o1"),
                                           ("EventCancelled", {}, "9"),
                                           ("BookingExpired", {"event_id": "bad"}, "x")):
        await signals(Envelope(event_id=str(uuid.uuid4()), event_type=event_type, event_version=1,
                               aggregate_id=aggregate, payload=payload, created_at_ms=0))
    assert worker.noted == {7, 8, 9}


async def test_a_seated_event_offers_the_seats_that_came_back(waitlist_shop: Any, make_event: Any, create_user: Any,
                                                              manual_clock: ManualClock) -> None:
    shop = waitlist_shop
    ev = await make_event(shop, tiers=[{"code": "A", "name": "Stalls", "price": 5000}],
                          seat_map=seat_map(rows=1, per_row=3, tiers=("A",)), hold_ttl_s=HOLD_TTL_S)
    buyer, basket, fan = await create_user(), await create_user(), await create_user()
    bought = await hold_seats(shop, buyer, ev["id"], ["s1", "s2"])
    assert (await buy(shop, buyer, bought["hold_id"])).status == 201
    await hold_seats(shop, basket, ev["id"], ["s3"])
    resp = await shop.patch(f"/api/events/{ev['id']}", json={"status": "sold_out"}, headers=ev["_organizer"].headers)
    assert resp.status == 200
    await join(shop, fan, ev["id"], quantity=2)
    manual_clock.advance(HOLD_TTL_S * 1000)
    offer = await offered(shop, offering(shop, manual_clock), ev["id"], fan)
    assert offer["quantity"] == 1
    hold = await (await shop.post(f"/api/offers/{offer['id']}/accept", headers=fan.headers)).json()
    assert (hold["seats"], hold["total"]) == (["s3"], 5000)
    seats = await (await shop.get(f"/api/events/{ev['id']}/seats")).json()
    assert {s["id"]: s["state"] for s in seats["seats"]} == {"s1": "sold", "s2": "sold", "s3": "held"}
    assert (await buy(shop, fan, hold["hold_id"], key="k-seat")).status == 201


async def test_the_worker_offers_returned_tickets_on_its_own(make_settings: Any, clocked_client: Any, keyring: Any,
                                                              aiohttp_client: Any, make_event: Any, create_user: Any,
                                                              manual_clock: ManualClock, db: asyncpg.Pool) -> None:
    settings = make_settings(waitlist_check_interval_s=0.05, hold_sweep_interval_s=0.05, rate_limits_enabled=False,
                             waitlist_offer_ttl_s=OFFER_TTL_S)
    shop = await clocked_client(settings)
    ev, held = await sold_out_with_a_basket(shop, make_event, create_user)
    fan = await create_user()
    await join(shop, fan, ev["id"])
    worker_app = create_worker_app(settings, keyring)
    worker_app[CLOCK] = manual_clock  # the same movable clock as the shop
    worker = await aiohttp_client(worker_app)
    manual_clock.advance(HOLD_TTL_S * 1000)
    row = None
    for _ in range(200):  # the loop's next look (every 0.05 s); up to ~10 s on a busy machine
        row = await db.fetchrow("SELECT user_id::text AS user_id, quantity, status FROM waitlist_offers")
        if row is not None:
            break
        await asyncio.sleep(0.05)
    assert row is not None and dict(row) == {"user_id": fan.id, "quantity": 1, "status": "pending"}
    text = await (await worker.get("/metrics")).text()
    assert 'ticketing_waitlist_offers_total{outcome="made"} 1.0' in text
    assert (await shop.app[INVENTORY].holds.get_hold(held["hold_id"])).state == "expired"


async def test_one_turn_shares_returned_seats_out_in_list_order(waitlist_shop: Any, make_event: Any, create_user: Any,
                                                                manual_clock: ManualClock) -> None:
    shop = waitlist_shop
    ev = await make_event(shop, tiers=[{"code": "A", "name": "Stalls", "price": 5000}],
                          seat_map=seat_map(rows=1, per_row=4, tiers=("A",)), hold_ttl_s=HOLD_TTL_S)
    buyer, basket, one, two, three = [await create_user() for _ in range(5)]
    bought = await hold_seats(shop, buyer, ev["id"], ["s1"])
    assert (await buy(shop, buyer, bought["hold_id"])).status == 201
    await hold_seats(shop, basket, ev["id"], ["s2", "s3", "s4"])
    await shop.patch(f"/api/events/{ev['id']}", json={"status": "sold_out"}, headers=ev["_organizer"].headers)
    await join(shop, one, ev["id"], quantity=1)
    await join(shop, two, ev["id"], quantity=2)
    await join(shop, three, ev["id"], quantity=1)
    manual_clock.advance(HOLD_TTL_S * 1000)
    run = await offering(shop, manual_clock).offer_returns(int(ev["id"]))
    assert len(run.offered) == 2 and not run.back_on_sale
    held = {}
    for fan in (one, two):
        [offer] = (await (await shop.get("/api/users/me/offers", headers=fan.headers)).json())["items"]
        hold = await (await shop.post(f"/api/offers/{offer['id']}/accept", headers=fan.headers)).json()
        held[fan.id] = hold["seats"]
    assert held == {one.id: ["s2"], two.id: ["s3", "s4"]}
    assert (await (await shop.get("/api/users/me/offers", headers=three.headers)).json())["items"] == []
