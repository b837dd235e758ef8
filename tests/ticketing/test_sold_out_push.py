"""Sold out and cancelled, as the room's waiting fans see them: the last seat bought through
``POST /api/holds/{id}/purchase`` -> every open event stream of the room says ``sold_out``
within 1 s of the purchase's 201, and every poll says so; an event cancelled through
``DELETE /api/events/{id}`` -> every stream says ``closed`` within 1 s, joins are refused,
admission stops, and the room stays closed through a loss of its Redis keys and a rebuild.

Real apps on one Redis prefix, one database and one key ring: ticketing (holds, purchases, its
sell-out watch, cancellation) and the waiting room (join, status, event streams). The room is
recorded in PostgreSQL as the admin API records it (rooms.durable). No admission controller
runs: the room lets in one shopper (``max_active`` 1) and everyone after them waits, so only the
sell-out or the cancellation can change what the waiting fans see. Ticketing's
``sold_out_check_interval_ms`` is 10 s here: only a failed check waits for it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from rooms.durable import DurableRooms
from rooms.queue_store import QueueStore
from rooms.record_store import RoomRecords
from rooms.store import RoomPatch, RoomStore
from stagedoor.bus import OutboxRelay, StreamConsumer
from stagedoor.bus_metrics import BusMetrics
from stagedoor.clock import ManualClock
from stagedoor.web import CALLS, DB, KEYS, REDIS
from tests.support.bus import drain
from tests.support.events import buy, seat_map
from tests.support.rooms import room_config
from ticketing.appkeys import CLOCK, HOLDS, INVENTORY, METRICS, ORDERS, PURCHASES
from ticketing.catalog.hold_sweeper import HoldSweeper
from ticketing.consumers import CONSUMER_FACTORIES
from ticketing.holds.shopper_session import AdmissionHooks, AdmissionSignals
from ticketing.orders.sold_out import SoldOutWatch

WAITING_FANS = 30
BUDGET_S = 1.0


@pytest.fixture
def manual_clock() -> ManualClock:
    # ticketing's clock must agree with the waiting room's (session expiries are wall-clock ms)
    return ManualClock(time.time_ns() // 1_000_000)


@dataclass
class Sale:
    ticketing: Any
    waitingroom: Any
    event: dict[str, Any]
    room: str
    durable: DurableRooms
    queue: QueueStore
    waiting: list[str]  # the waiting fans' queue tokens
    buyer_token: str  # the one shopper's admission token

    @property
    def event_id(self) -> str:
        return str(self.event["id"])


@pytest.fixture
async def sale(shop: Any, service_client: Any, make_settings: Any, make_event: Any) -> Sale:
    settings = make_settings(rate_limits_enabled=False)
    # the check runs on the purchase's note: an interval far above the budget shows no timer is waited for
    ticketing = await shop(sold_out_check_interval_ms=10_000)
    waitingroom = await service_client("waitingroom", settings)
    event = await make_event(ticketing, seat_map=seat_map(rows=1, per_row=2, tiers=("A",)),
                             tiers=[{"code": "A", "name": "Stalls", "price": 100}])
    app = ticketing.server.app
    durable = DurableRooms(RoomRecords(app[DB]), RoomStore(app[CALLS], app[KEYS]), QueueStore(app[CALLS], app[KEYS]))
    now = int(time.time() * 1000)
    room = "ev-" + uuid.uuid4().hex[:8]
    await durable.put(room_config(room, event_id=event["id"], rate_per_s=100.0, max_active=1,
                                  opens_at_ms=now - 60_000, starts_at_ms=now - 30_000))
    buyer = await _join(waitingroom, room)
    if buyer["state"] != "admitted":  # the bucket had no token yet: one tick, as the controller would
        await durable.queue.admit_tick(room, int(time.time() * 1000) + 1_000, max_batch=1, burst_s=1.0)
    status = await _poll(waitingroom, room, buyer["queue_token"])
    assert status["state"] == "admitted", status
    waiting = []
    for _ in range(WAITING_FANS):
        joined = await _join(waitingroom, room)
        assert joined["state"] == "waiting", joined
        waiting.append(joined["queue_token"])
    return Sale(ticketing, waitingroom, event, room, durable, durable.queue, waiting, status["admission_token"])


async def _join(waitingroom: Any, room: str) -> dict[str, Any]:
    waitingroom.session.cookie_jar.clear()  # every fan its own browser
    resp = await waitingroom.post(f"/api/rooms/{room}/join", json={})
    assert resp.status == 201, await resp.text()
    joined: dict[str, Any] = await resp.json()
    return joined


async def _poll(waitingroom: Any, room: str, queue_token: str) -> dict[str, Any]:
    resp = await waitingroom.get(f"/api/rooms/{room}/status", headers={"Authorization": f"Bearer {queue_token}"})
    assert resp.status == 200, await resp.text()
    status: dict[str, Any] = await resp.json()
    return status


async def _next_status(resp: Any) -> dict[str, Any]:
    while True:
        line = await resp.content.readline()
        if not line:
            raise AssertionError("the stream ended without the state")
        text = line.decode().strip()
        if text.startswith("data:"):
            status: dict[str, Any] = json.loads(text[5:].strip())
            return status


async def _open_streams(sale: Sale) -> list[Any]:
    streams = []
    for token in sale.waiting:
        resp = await sale.waitingroom.get(f"/api/rooms/{sale.room}/events",
                                          headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200
        streams.append(resp)
    for resp in streams:
        assert (await asyncio.wait_for(_next_status(resp), 2))["state"] == "waiting"
    return streams


async def _first_change(resp: Any) -> tuple[str, float]:
    """The first state other than waiting a stream pushes, and when it arrived (monotonic)."""
    while True:
        status = await _next_status(resp)
        if status["state"] != "waiting":
            return status["state"], time.monotonic()


async def _buy_the_last_seats(sale: Sale, create_user: Any) -> Any:
    fan = await create_user()
    admission = {"X-Admission-Token": sale.buyer_token}
    resp = await sale.ticketing.post(f"/api/events/{sale.event_id}/holds", json={"seats": ["s1", "s2"]},
                                     headers={**fan.headers, **admission})
    assert resp.status == 201, await resp.text()
    return fan, (await resp.json())["hold_id"], admission


async def test_the_last_seat_bought_tells_every_open_stream_sold_out_within_a_second(
        sale: Sale, create_user: Any) -> None:
    streams = await _open_streams(sale)
    readers = [asyncio.ensure_future(_first_change(resp)) for resp in streams]
    fan, hold_id, admission = await _buy_the_last_seats(sale, create_user)
    resp = await buy(sale.ticketing, fan, hold_id, headers=admission)
    assert resp.status == 201, await resp.text()
    bought_at = time.monotonic()
    seen = await asyncio.wait_for(asyncio.gather(*readers), 5)
    assert {state for state, _ in seen} == {"sold_out"}
    latencies = sorted(max(0.0, at - bought_at) for _, at in seen)
    assert len(latencies) == WAITING_FANS and latencies[-1] < BUDGET_S, latencies
    for stream in streams:
        stream.close()


async def test_every_poll_says_sold_out_within_a_second_of_the_last_purchase(sale: Sale, create_user: Any) -> None:
    fan, hold_id, admission = await _buy_the_last_seats(sale, create_user)
    assert {(await _poll(sale.waitingroom, sale.room, t))["state"] for t in sale.waiting} == {"waiting"}
    resp = await buy(sale.ticketing, fan, hold_id, headers=admission)
    assert resp.status == 201, await resp.text()
    deadline = time.monotonic() + BUDGET_S
    pending = set(sale.waiting)
    while pending and time.monotonic() < deadline:  # the pages' polling, all fans at once
        states = await asyncio.gather(*(_poll(sale.waitingroom, sale.room, t) for t in pending))
        pending = {t for t, s in zip(list(pending), states, strict=True) if s["state"] != "sold_out"}
        if pending:
            await asyncio.sleep(0.05)
    assert not pending, f"{len(pending)} fans not told within {BUDGET_S} s"
    sale.waitingroom.session.cookie_jar.clear()
    assert (await sale.waitingroom.post(f"/api/rooms/{sale.room}/join", json={})).status == 409


async def test_the_worker_tells_the_room_when_the_ticketing_process_never_checked(
        sale: Sale, create_user: Any, settings: Any, db: Any) -> None:
    app = sale.ticketing.server.app
    app[PURCHASES].sold_out.note = lambda event_id, room: None  # type: ignore[method-assign]  # died after commit
    fan, hold_id, admission = await _buy_the_last_seats(sale, create_user)
    assert (await buy(sale.ticketing, fan, hold_id, headers=admission)).status == 201
    assert (await _poll(sale.waitingroom, sale.room, sale.waiting[0]))["state"] == "waiting"
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'SoldOut'") == 0

    # the worker: its hold sweeper hands the counters to its own watch
    watch = SoldOutWatch(settings.sold_out_check_interval_ms, holds=app[HOLDS], orders=app[ORDERS],
                         admission=AdmissionHooks(app[CALLS], app[KEYS]))
    sweeper = HoldSweeper(app[INVENTORY], settings, app[METRICS], app[CLOCK], on_counts=watch.consider)
    await sweeper.tick()
    await watch.check_once(int(time.time() * 1000))
    assert {(await _poll(sale.waitingroom, sale.room, t))["state"] for t in sale.waiting} == {"sold_out"}
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'SoldOut'") == 1
    assert await db.fetchval("SELECT status FROM events WHERE id = $1", int(sale.event_id)) == "sold_out"
    # told once: the next sweeps cost PostgreSQL nothing for this event
    await sweeper.tick()
    assert not watch.noted


async def _cancel(sale: Sale) -> None:
    resp = await sale.ticketing.delete(f"/api/events/{sale.event_id}", headers=sale.event["_organizer"].headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "cancelled"


async def _room_keys(sale: Sale) -> list[bytes]:
    redis = sale.ticketing.server.app[CALLS].redis
    prefix = sale.ticketing.server.app[KEYS].room(sale.room, "")
    return [k async for k in redis.scan_iter(match=prefix + "*", count=1000)]


async def _assert_closed_for_good(sale: Sale) -> None:
    assert {(await _poll(sale.waitingroom, sale.room, t))["state"] for t in sale.waiting} == {"closed"}
    sale.waitingroom.session.cookie_jar.clear()
    resp = await sale.waitingroom.post(f"/api/rooms/{sale.room}/join", json={})
    assert resp.status == 409, await resp.text()
    before = await sale.queue.admit_tick(sale.room, int(time.time() * 1000) + 60_000, max_batch=100, burst_s=1.0)
    assert before.outcome == "idle"
    room = await sale.durable.rooms.get(sale.room)
    assert room is not None and room.mode == "closed"


async def test_a_cancelled_event_closes_its_room_on_every_stream_within_a_second(sale: Sale) -> None:
    streams = await _open_streams(sale)
    readers = [asyncio.ensure_future(_first_change(resp)) for resp in streams]
    await _cancel(sale)
    cancelled_at = time.monotonic()
    seen = await asyncio.wait_for(asyncio.gather(*readers), 5)
    assert {state for state, _ in seen} == {"closed"}
    latencies = sorted(max(0.0, at - cancelled_at) for _, at in seen)
    assert latencies[-1] < BUDGET_S, latencies
    await _assert_closed_for_good(sale)
    for stream in streams:
        stream.close()


async def test_a_cancelled_events_room_stays_closed_through_redis_loss_rebuilds_and_admin_writes(
        sale: Sale, create_user: Any) -> None:
    await _cancel(sale)
    await _assert_closed_for_good(sale)

    # Redis loses the room's keys (only those): the waiting room's miss path rebuilds it from PostgreSQL
    keys = await _room_keys(sale)
    assert keys
    await sale.ticketing.server.app[CALLS].redis.delete(*keys)
    assert await sale.durable.rooms.get(sale.room) is None
    assert (await _poll(sale.waitingroom, sale.room, sale.waiting[0]))["state"] == "closed"
    await _assert_closed_for_good(sale)

    # the admission service's rebuild and repair copy the record again: still closed
    await sale.ticketing.server.app[CALLS].redis.delete(*await _room_keys(sale))
    assert await sale.durable.restore_all() >= 1
    await _assert_closed_for_good(sale)

    # an SRE's write to the room (a rate change, even mode fifo) does not open it again
    await sale.durable.patch(sale.room, RoomPatch(rate_per_s=50.0, mode="fifo"))
    await _assert_closed_for_good(sale)

    # a late sell-out (the bus delivering SoldOut) does not relabel it
    await AdmissionHooks(sale.ticketing.server.app[CALLS], sale.ticketing.server.app[KEYS]).mark_sold_out(
        sale.room, int(time.time() * 1000))
    await _assert_closed_for_good(sale)


async def test_the_cancellations_bus_delivery_closes_the_room_when_the_direct_call_was_lost(sale: Sale) -> None:
    app = sale.ticketing.server.app

    async def lost(self: Any, event_id: str, now_ms: int) -> None:
        return None

    original = AdmissionHooks.close_cancelled_event
    AdmissionHooks.close_cancelled_event = lost  # type: ignore[method-assign]
    try:
        await _cancel(sale)
    finally:
        AdmissionHooks.close_cancelled_event = original  # type: ignore[method-assign]
    assert (await _poll(sale.waitingroom, sale.room, sale.waiting[0]))["state"] == "waiting"
    relay = OutboxRelay(app[DB], app[REDIS], app[KEYS], metrics=BusMetrics())
    while await relay.tick():
        pass
    consumer = StreamConsumer(app[REDIS], app[KEYS], "admission", CONSUMER_FACTORIES["admission"](app),
                              block_ms=0, metrics=BusMetrics(), event_types=AdmissionSignals.event_types)
    await consumer.ensure_group()
    assert await drain(consumer) >= 1
    await _assert_closed_for_good(sale)
