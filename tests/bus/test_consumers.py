"""The worker's bus consumers end to end (ticketing/consumers.py): the admission group's
ShopperFinished and SoldOut, and the refunds group's EventCancelled.

Each test drives the ticketing app for real, takes out the purchase path's direct call where
there is one (so only the bus can have done the work), moves the events through the outbox relay
or the best-effort emitter onto the stream, and runs the group's consumer with the handler the
worker builds (the ``CONSUMER_FACTORIES`` of ticketing/consumers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

import asyncpg
import redis.asyncio as redis_asyncio

from rooms.queue_store import QueueStore
from rooms.store import RoomConfig, RoomStore, room_from_config
from stagedoor.admission_tokens import mint_admission_token
from stagedoor.bus import EMITTER, OutboxRelay, StreamConsumer
from stagedoor.bus_metrics import BusMetrics
from stagedoor.redis_keys import RedisKeys
from stagedoor.web import CALLS, KEYS
from tests.support.bus import Recorder, drain, stream_envelopes, wait_outbox
from tests.support.events import buy, hold_seats, seat_map
from ticketing.appkeys import PURCHASES
from ticketing.consumers import CONSUMER_FACTORIES
from ticketing.holds.shopper_session import AdmissionSignals
from ticketing.orders.refunds import CancellationRefunds
from ticketing.payments.gateway import Charge, MockGateway


async def open_room(app: Any, event_id: str, now_ms: int, max_active: int) -> tuple[RoomStore, QueueStore]:
    rooms = RoomStore(app[CALLS], app[KEYS])
    await rooms.put(room_from_config("hall", RoomConfig(event_id=event_id, rate_per_s=100.0, max_active=max_active),
                                     now_ms), now_ms)
    return rooms, QueueStore(app[CALLS], app[KEYS])


async def admitted(queue: QueueStore, now_ms: int) -> str:
    joined = await queue.join("hall", None, now_ms, burst_s=1.0)
    if joined.outcome != "admitted":
        await queue.admit_tick("hall", now_ms + 1_000, max_batch=10, burst_s=1.0)
    assert await queue.is_active("hall", joined.visitor_id, now_ms + 1_000)
    return joined.visitor_id


async def gated_sale(shop: Any, make_event: Any, manual_clock: Any, *, seats: int,
                     max_active: int) -> tuple[Any, dict[str, Any], RoomStore, QueueStore, str]:
    """A shop whose event (``seats`` seats of one tier) is gated by room "hall", and one visitor
    admitted to it; the clock runs at wall-clock time (the consumers end sessions at wall time)."""
    manual_clock.value = int(time.time() * 1000)
    client = await shop()
    event = await make_event(client, seat_map=seat_map(rows=1, per_row=seats, tiers=("A",)),
                             tiers=[{"code": "A", "name": "Stalls", "price": 100}])
    rooms, queue = await open_room(client.server.app, event["id"], manual_clock.now_ms(), max_active=max_active)
    visitor = await admitted(queue, manual_clock.now_ms())
    manual_clock.advance(1_000)
    return client, event, rooms, queue, visitor


async def buy_through_the_queue(client: Any, keyring: Any, create_user: Any, event_id: str, visitor: str,
                                seats: list[str]) -> dict[str, Any]:
    token, _ = mint_admission_token(keyring, visitor_id=visitor, room="hall", event_id=event_id, ttl_s=600)
    fan = await create_user()
    gate = {"X-Admission-Token": token}
    resp = await client.post(f"/api/events/{event_id}/holds", json={"seats": seats}, headers={**fan.headers, **gate})
    assert resp.status == 201, await resp.text()
    resp = await buy(client, fan, (await resp.json())["hold_id"], headers=gate)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_shopper_finished_from_the_emitter_ends_the_session_in_the_admission_group(
        shop: Any, make_event: Any, create_user: Any, keyring: Any, manual_clock: Any, redis_client: Any,
        keys: RedisKeys, make_consumer: Any) -> None:
    client, event, _, queue, visitor = await gated_sale(shop, make_event, manual_clock, seats=2,
                                                        max_active=10)
    app = client.server.app
    lost: list[tuple[str, str]] = []

    async def direct_call_lost(room: str, visitor_id: str, now_ms: int) -> None:
        lost.append((room, visitor_id))

    app[PURCHASES].admission.finish_shopper = direct_call_lost  # type: ignore[union-attr, method-assign]
    await buy_through_the_queue(client, keyring, create_user, event["id"], visitor, ["s1"])
    assert lost == [("hall", visitor)]
    assert await queue.is_active("hall", visitor, manual_clock.now_ms())  # only the bus can end it now

    await app[EMITTER].flush()
    finished = [env for _, env in await stream_envelopes(redis_client, keys) if env.event_type == "ShopperFinished"]
    assert len(finished) == 1
    assert finished[0].payload["room"] == "hall" and finished[0].payload["visitor_id"] == visitor
    assert finished[0].payload["event_id"] == event["id"]

    consumer = make_consumer("admission", CONSUMER_FACTORIES["admission"](app),
                             event_types=AdmissionSignals.event_types)
    await consumer.ensure_group()
    assert await drain(consumer) == 1
    assert not await queue.is_active("hall", visitor, int(time.time() * 1000))
    assert await redis_client.hget(keys.room_state("hall"), "finished_total") == b"1"
    assert (await redis_client.xpending(keys.bus_stream(), "admission"))["pending"] == 0


async def test_sold_out_from_the_outbox_shows_sold_out_to_every_waiting_visitor(
        shop: Any, make_event: Any, create_user: Any, keyring: Any, manual_clock: Any, pool: asyncpg.Pool,
        make_relay: Any, make_consumer: Any) -> None:
    client, event, rooms, queue, buyer = await gated_sale(shop, make_event, manual_clock, seats=1,
                                                          max_active=1)
    app = client.server.app
    now = manual_clock.now_ms()
    waiting = [(await queue.join("hall", None, now, burst_s=1.0)).visitor_id for _ in range(3)]
    assert {(await queue.status("hall", v, now)).state for v in waiting} == {"waiting"}
    direct: list[str] = []

    async def direct_call_lost(room: str, now_ms: int) -> None:
        direct.append(room)

    app[PURCHASES].admission.mark_sold_out = direct_call_lost  # type: ignore[union-attr, method-assign]
    await buy_through_the_queue(client, keyring, create_user, event["id"], buyer, ["s1"])
    await wait_outbox(pool, "SoldOut")  # the last seat: status sold_out + a SoldOut outbox row
    assert not (await rooms.stats("hall", now, 10_000)).sold_out
    assert {(await queue.status("hall", v, now)).state for v in waiting} == {"waiting"}

    relay: OutboxRelay = make_relay()
    while await relay.tick():
        pass
    consumer = make_consumer("admission", CONSUMER_FACTORIES["admission"](app),
                             event_types=AdmissionSignals.event_types)
    await consumer.ensure_group()
    assert await drain(consumer) >= 1
    assert (await rooms.stats("hall", now, 10_000)).sold_out
    assert {(await queue.status("hall", v, now)).state for v in waiting} == {"sold_out"}


class CountingGateway(MockGateway):
    """The mock gateway, counting refund calls per charge (it answers a repeated refund like the
    real ones do, with the first refund's id, so only the count shows a second attempt)."""

    def __init__(self) -> None:
        super().__init__()
        self.refund_calls: dict[str, int] = {}

    async def refund(self, charge: Charge, *, idempotency_key: str, amount: int | None = None) -> str:
        self.refund_calls[charge.id] = self.refund_calls.get(charge.id, 0) + 1
        return await super().refund(charge, idempotency_key=idempotency_key, amount=amount)


async def test_event_cancelled_refunds_each_order_once_even_when_delivered_twice(
        shop: Any, make_event: Any, create_user: Any, pool: asyncpg.Pool, redis_client: Any, keys: RedisKeys,
        make_relay: Any, make_consumer: Any) -> None:
    gateway = CountingGateway()
    client = await shop(gateway=gateway)
    app = client.server.app
    event = await make_event(client)
    orders = []
    for seats in (["s1"], ["s2", "s3"], ["s4"], ["s5", "s6", "s7"]):
        fan = await create_user()
        hold = await hold_seats(client, fan, event["id"], seats)
        resp = await buy(client, fan, hold["hold_id"])
        assert resp.status == 201, await resp.text()
        orders.append(await resp.json())
    resp = await client.delete(f"/api/events/{event['id']}", headers=event["_organizer"].headers)
    assert resp.status == 200, await resp.text()
    assert await pool.fetchval("SELECT count(*) FROM orders WHERE status = 'confirmed'") == len(orders)

    relay: OutboxRelay = make_relay()
    while await relay.tick():
        pass
    cancelled = [(sid, env) for sid, env in await stream_envelopes(redis_client, keys)
                 if env.event_type == "EventCancelled"]
    assert len(cancelled) == 1
    await relay.publish([cancelled[0][1]])  # delivered twice: the row republished (a relay crash before its stamp)

    handler = CONSUMER_FACTORIES["refunds"](app)
    assert isinstance(handler, CancellationRefunds)
    consumer = make_consumer("refunds", handler, event_types=CancellationRefunds.event_types)
    await consumer.ensure_group()
    assert await drain(consumer) == 1
    assert (await redis_client.xpending(keys.bus_stream(), "refunds"))["pending"] == 0

    charged = set(gateway.charges[k].id for k in gateway.charges)
    assert len(charged) == len(orders)
    assert gateway.refund_calls == {charge: 1 for charge in charged}
    assert await pool.fetchval("SELECT count(*) FROM orders WHERE status = 'refunded'") == len(orders)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'OrderRefunded'") == len(orders)

    # Delivered again after the group's dedupe window (or to a group that lost its dedupe keys):
    # the handler itself refunds nothing twice.
    await handler(cancelled[0][1])
    assert gateway.refund_calls == {charge: 1 for charge in charged}
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'OrderRefunded'") == len(orders)


async def test_shopper_finished_is_emitted_when_the_direct_call_fails(
        shop: Any, make_event: Any, create_user: Any, keyring: Any, manual_clock: Any, redis_client: Any,
        keys: RedisKeys) -> None:
    client, event, _, _queue, visitor = await gated_sale(shop, make_event, manual_clock, seats=2,
                                                         max_active=10)
    app = client.server.app

    async def direct_call_fails(room: str, visitor_id: str, now_ms: int) -> None:
        raise ConnectionError("admission Redis unreachable")

    app[PURCHASES].admission.finish_shopper = direct_call_fails  # type: ignore[union-attr, method-assign]
    await buy_through_the_queue(client, keyring, create_user, event["id"], visitor, ["s1"])
    await app[EMITTER].flush()
    finished = [env for _, env in await stream_envelopes(redis_client, keys) if env.event_type == "ShopperFinished"]
    assert [env.payload["visitor_id"] for env in finished] == [visitor]


async def test_a_consumer_meeting_an_unreachable_redis_warns_and_retries_without_a_traceback(
        keys: RedisKeys, caplog: Any) -> None:
    # an outage meets every consumer of every process: a warning with the reason per retry, not
    # an ERROR with a traceback (those stay for handler and programming errors)
    caplog.set_level(logging.WARNING, logger="stagedoor.bus")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    down = redis_asyncio.Redis.from_url(f"redis://127.0.0.1:{closed_port}/0", socket_connect_timeout=0.2)
    consumer = StreamConsumer(down, keys, "outage", Recorder(), block_ms=0, metrics=BusMetrics())
    task = asyncio.create_task(consumer.run())
    try:
        for _ in range(50):
            if len([r for r in caplog.records if r.name == "stagedoor.bus"]) >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await down.aclose()
    records = [r for r in caplog.records if r.name == "stagedoor.bus"]
    assert len(records) >= 2  # it keeps retrying
    assert {r.getMessage() for r in records} == {"bus_consumer_failed"}
    assert {r.levelno for r in records} == {logging.WARNING} and not any(r.exc_info for r in records)
    assert {r.reason for r in records} == {"unreachable"}  # type: ignore[attr-defined]
