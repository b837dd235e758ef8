"""Relay and consumer basics: order, stamping, at-least-once with dedupe, retries, dead letters."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
import redis.asyncio as redis_asyncio

from stagedoor.bus import OutboxRelay
from stagedoor.bus_envelope import Envelope
from stagedoor.redis_keys import RedisKeys
from tests.support.bus import Recorder, insert_outbox


async def stream_envelopes(redis: redis_asyncio.Redis, keys: RedisKeys) -> list[Envelope]:
    return [msgspec.json.decode(f[b"env"], type=Envelope) for _, f in await redis.xrange(keys.bus_stream())]


async def test_relay_publishes_in_id_order_and_stamps(pool: asyncpg.Pool, redis_client: Any, keys: RedisKeys,
                                                      make_relay: Any) -> None:
    ids = [await insert_outbox(pool, "Test", f"agg{i}", {"n": i}) for i in range(7)]
    relay: OutboxRelay = make_relay(batch=3)
    assert await relay.tick() == 3
    assert await relay.tick() == 3
    assert await relay.tick() == 1
    assert await relay.tick() == 0
    envs = await stream_envelopes(redis_client, keys)
    assert [e.event_id for e in envs] == ids
    assert [e.payload["n"] for e in envs] == list(range(7))
    assert envs[0].event_type == "Test" and envs[0].aggregate_id == "agg0" and envs[0].event_version == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    assert relay.metrics.outbox_lag_seconds._value.get() == 0  # type: ignore[union-attr]


async def test_relay_crash_before_stamp_republishes_and_consumer_handles_once(
        pool: asyncpg.Pool, redis_client: Any, keys: RedisKeys, make_relay: Any, make_consumer: Any) -> None:
    ids = [await insert_outbox(pool, "Test", f"agg{i}") for i in range(4)]

    class Crash(Exception):
        pass

    crashing: OutboxRelay = make_relay()

    async def crash_stamp(conn: Any, row_ids: list[int]) -> None:
        raise Crash  # the process dies after XADD, before the UPDATE commits

    crashing.stamp = crash_stamp  # type: ignore[method-assign]
    try:
        await crashing.tick()
    except Crash:
        pass
    assert await redis_client.xlen(keys.bus_stream()) == 4
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 4
    assert await make_relay().tick() == 4  # the next relay republishes
    assert await redis_client.xlen(keys.bus_stream()) == 8
    rec = Recorder()
    consumer = make_consumer("g", rec)
    await consumer.ensure_group()
    total = 0
    for _ in range(3):
        total += await consumer.run_once()
    assert total == 4
    assert rec.calls == {i: 1 for i in ids}
    assert sorted(e.event_id for e in rec.handled) == sorted(ids)
    pending = await redis_client.xpending(keys.bus_stream(), "g")
    assert pending["pending"] == 0


async def test_failing_handler_retries_then_dead_letters(pool: asyncpg.Pool, redis_client: Any, keys: RedisKeys,
                                                         make_relay: Any, make_consumer: Any) -> None:
    ok_id = await insert_outbox(pool, "Ok", "a")
    bad_id = await insert_outbox(pool, "Bad", "b")
    await make_relay().tick()

    async def handler(env: Envelope) -> None:
        if env.event_type == "Bad":
            raise ValueError("poison")

    consumer = make_consumer("g", handler, max_attempts=3, retry_ms=10, claim_idle_ms=60_000)
    await consumer.ensure_group()
    import asyncio
    for _ in range(200):
        await consumer.run_once()
        if await redis_client.xlen(keys.bus_dead()):
            break
        await asyncio.sleep(0.02)
    dead = await redis_client.xrange(keys.bus_dead())
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"id"].decode() == bad_id
    assert fields[b"group"] == b"g" and fields[b"attempts"] == b"3"
    assert b"poison" in fields[b"error"]
    assert (await redis_client.xpending(keys.bus_stream(), "g"))["pending"] == 0
    assert consumer.metrics.bus_failed_total.labels("g", "Bad")._value.get() == 3
    assert consumer.metrics.bus_handled_total.labels("g", "Ok")._value.get() == 1
    del ok_id


async def test_consumer_killed_mid_batch_is_taken_over_without_loss_or_double(
        pool: asyncpg.Pool, redis_client: Any, keys: RedisKeys, make_relay: Any, make_consumer: Any) -> None:
    import asyncio

    ids = [await insert_outbox(pool, "Test", f"agg{i}") for i in range(10)]
    await make_relay().tick()
    effects: dict[str, int] = {}
    started = asyncio.Event()
    block = asyncio.Event()

    async def slow(env: Envelope) -> None:
        started.set()
        await block.wait()  # never released: the consumer dies in here
        effects[env.event_id] = effects.get(env.event_id, 0) + 1

    async def count(env: Envelope) -> None:
        effects[env.event_id] = effects.get(env.event_id, 0) + 1

    doomed = make_consumer("g", slow, consumer_name="doomed", claim_idle_ms=200)
    await doomed.ensure_group()
    task = asyncio.create_task(doomed.run_once())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()  # killed after reading the batch, before any ack
    try:
        await task
    except asyncio.CancelledError:
        pass
    pending = await redis_client.xpending(keys.bus_stream(), "g")
    assert pending["pending"] == 10
    heir = make_consumer("g", count, consumer_name="heir", claim_idle_ms=200)
    for _ in range(200):
        await heir.run_once()
        if (await redis_client.xpending(keys.bus_stream(), "g"))["pending"] == 0:
            break
        await asyncio.sleep(0.05)
    assert effects == {i: 1 for i in ids}
    assert heir.metrics.bus_claimed_total.labels("g")._value.get() >= 1


async def test_trimming_never_drops_an_entry_a_group_still_needs(
        pool: asyncpg.Pool, redis_client: Any, keys: RedisKeys, make_relay: Any, make_consumer: Any) -> None:
    for i in range(30):
        await insert_outbox(pool, "Test", f"agg{i}")
    relay: OutboxRelay = make_relay(stream_maxlen=10)
    await relay.tick()
    stream = keys.bus_stream()
    entries = await redis_client.xrange(stream)
    rec_fast, rec_slow = Recorder(), Recorder(fail=100)
    fast = make_consumer("fast", rec_fast, batch=100)
    slow = make_consumer("slow", rec_slow, batch=5, retry_ms=600_000, claim_idle_ms=600_000)
    await fast.ensure_group()
    await slow.ensure_group()
    await fast.run_once()
    await slow.run_once()  # reads 5, all fail: 5 pending, 25 unread
    assert len(rec_fast.handled) == 30
    assert await relay.trim() == 0  # the slow group still needs everything
    assert await redis_client.xlen(stream) == 30
    rec_slow.fail = 0
    await redis_client.xack(stream, "slow", *[e[0] for e in entries[:3]])  # 3 done, 2 still pending
    assert await relay.trim() == 3
    remaining = await redis_client.xrange(stream)
    assert [e[0] for e in remaining] == [e[0] for e in entries[3:]]
    pending = await redis_client.xpending_range(stream, "slow", min="-", max="+", count=10)
    assert {p["message_id"] for p in pending} <= {e[0] for e in remaining}
    # once the slow group caught up, trimming goes down to maxlen
    slow.retry_ms = 10
    await redis_client.xack(stream, "slow", *[p["message_id"] for p in pending])
    while await slow.run_once():
        pass
    assert await relay.trim() == 17
    assert await redis_client.xlen(stream) == 10
