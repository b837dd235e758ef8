"""Every event type is emitted by the real code path, and the read model's `available` search
agrees with the inventory (drive the ticketing app, relay the outbox, consume the stream)."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from stagedoor.bus import EMITTER, OutboxRelay
from stagedoor.bus_envelope import Envelope
from stagedoor.bus_events import decode_payload
from stagedoor.redis_keys import RedisKeys
from tests.support.bus import wait_outbox
from tests.support.events import buy, hold_seats, seat_map
from ticketing.appkeys import INVENTORY
from ticketing.catalog.hold_sweeper import sweep_event
from ticketing.catalog.read_model import ReadModel


async def relay_all(relay: OutboxRelay) -> None:
    while await relay.tick():
        pass


async def envelopes(redis: Any, keys: RedisKeys) -> list[Envelope]:
    return [msgspec.json.decode(f[b"env"], type=Envelope) for _, f in await redis.xrange(keys.bus_stream())]


async def test_every_event_type_is_emitted(shop: Any, make_event: Any, create_user: Any, pool: asyncpg.Pool,
                                           redis_client: Any, keys: RedisKeys, make_relay: Any,
                                           manual_clock: Any) -> None:
    client = await shop(bus_emit_hold_placed=True)  # HoldPlaced is opt-in (no consumer of ours reads it)
    app = client.server.app
    event = await make_event(client, seat_map=seat_map(rows=1, per_row=3, tiers=("A",)),
                             tiers=[{"code": "A", "name": "Stalls", "price": 5000}])
    ev, organizer = event["id"], event["_organizer"]
    resp = await client.patch(f"/api/events/{ev}", json={"title": "Renamed"}, headers=organizer.headers)
    assert resp.status == 200, await resp.text()
    draft = await make_event(client, organizer=organizer, draft=True)
    resp = await client.patch(f"/api/events/{draft['id']}", json={"status": "on_sale"}, headers=organizer.headers)
    assert resp.status == 200, await resp.text()

    fan = await create_user()
    hold = await hold_seats(client, fan, ev, ["s1"])
    declined = await buy(client, fan, hold["hold_id"], key="k-declined", token="tok_declined")
    assert declined.status == 402, await declined.text()
    order = await buy(client, fan, hold["hold_id"], key="k-ok")
    assert order.status == 201, await order.text()
    code = (await order.json())["tickets"][0]["code"]
    resp = await client.post("/api/checkin", json={"code": code}, headers=organizer.headers)
    assert resp.status == 200, await resp.text()

    expiring = await hold_seats(client, await create_user(), ev, ["s2"])
    manual_clock.advance(3600 * 1000)
    assert await sweep_event(app[INVENTORY], ev, manual_clock.now_ms(), 3600 * 1000) == 1
    last = await hold_seats(client, fan, ev, ["s2", "s3"])
    resp = await buy(client, fan, last["hold_id"], key="k-last")
    assert resp.status == 201, await resp.text()
    await wait_outbox(pool, "SoldOut")
    resp = await client.delete(f"/api/events/{ev}", headers=organizer.headers)
    assert resp.status == 200, await resp.text()
    await app[EMITTER].flush()

    await relay_all(make_relay())
    got = await envelopes(redis_client, keys)
    by_type: dict[str, list[Envelope]] = {}
    for env in got:
        by_type.setdefault(env.event_type, []).append(env)
        decode_payload(env)  # every payload matches its versioned type
    expected = {"EventCreated", "EventUpdated", "EventPublished", "EventCancelled", "HoldPlaced", "BookingExpired",
                "OrderConfirmed", "PaymentFailed", "TicketCheckedIn", "SoldOut"}
    assert expected <= set(by_type), sorted(set(by_type))
    assert {e.payload["event_id"] for e in by_type["EventPublished"]} == {ev, draft["id"]}
    assert by_type["EventUpdated"][0].payload["fields"] == ["title"]
    assert by_type["PaymentFailed"][0].payload["reason"] == "declined"
    assert by_type["BookingExpired"][0].payload["hold_id"] == expiring["hold_id"]
    placed = {e.payload["hold_id"] for e in by_type["HoldPlaced"]}
    assert placed == {hold["hold_id"], expiring["hold_id"], last["hold_id"]}
    assert len(by_type["OrderConfirmed"]) == 2 and len(by_type["TicketCheckedIn"]) == 1
    del code


async def test_available_search_follows_the_read_model(shop: Any, make_event: Any, create_user: Any,
                                                       pool: asyncpg.Pool, make_relay: Any, make_consumer: Any,
                                                       manual_clock: Any) -> None:
    client = await shop()
    app = client.server.app
    small = await make_event(client, title="Small gig", seat_map=seat_map(rows=1, per_row=2, tiers=("A",)),
                             tiers=[{"code": "A", "name": "Stalls", "price": 5000}])
    big = await make_event(client, title="Big gig")
    relay = make_relay()
    model = make_consumer("read_model", ReadModel(pool))

    async def settle() -> None:
        await relay_all(relay)
        while await model.run_once():
            pass

    async def available() -> set[str]:
        resp = await client.get("/api/events", params={"available": "true"})
        assert resp.status == 200
        return {e["id"] for e in (await resp.json())["items"]}

    async def inventory_free(ev: str) -> int:
        counts = await app[INVENTORY].holds.tier_counts(ev)
        return sum(c.free + c.held for c in counts.values())

    await settle()
    assert await available() == {small["id"], big["id"]}
    assert await pool.fetchval("SELECT tickets_left FROM events WHERE id = $1", int(small["id"])) == 2

    fan = await create_user()
    held = await hold_seats(client, fan, small["id"], ["s1", "s2"])
    manual_clock.advance(3600 * 1000)  # the hold expires: still available
    await sweep_event(app[INVENTORY], small["id"], manual_clock.now_ms(), 3600 * 1000)
    await settle()
    assert small["id"] in await available()
    assert await inventory_free(small["id"]) == 2
    del held

    one = await hold_seats(client, fan, small["id"], ["s1"])
    assert (await buy(client, fan, one["hold_id"], key="k1")).status == 201
    await settle()
    assert small["id"] in await available()
    assert await pool.fetchval("SELECT tickets_left FROM events WHERE id = $1", int(small["id"])) == 1
    two = await hold_seats(client, fan, small["id"], ["s2"])
    assert (await buy(client, fan, two["hold_id"], key="k2")).status == 201
    await settle()
    assert await available() == {big["id"]}
    assert await inventory_free(small["id"]) == 0
    resp = await client.get("/api/events", params={"available": "false"})
    assert {e["id"] for e in (await resp.json())["items"]} == {small["id"]}

    # redelivery changes nothing (exactly-once per group)
    row = await pool.fetchrow("SELECT event_id, payload FROM outbox WHERE event_type = 'OrderConfirmed' LIMIT 1")
    env = Envelope(event_id=str(row["event_id"]), event_type="OrderConfirmed", event_version=1,
                   aggregate_id="x", payload=row["payload"], created_at_ms=0)
    await ReadModel(pool)(env)
    assert await pool.fetchval("SELECT tickets_left FROM events WHERE id = $1", int(small["id"])) == 0
