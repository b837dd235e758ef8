"""Joins and status polls batched per room and loop turn (``RedisCalls.batch_per_turn``,
stagedoor/turn_batches.py) into lua/join_many.lua and lua/status_many.lua.

- Hypothesis: a join_many call of N new visitors leaves Redis exactly as N join_queue calls one
  after another would (queue, sessions, token bucket, seq, heartbeat bits), and gives each
  visitor the same answer, its position read after the whole batch, in every mode and state;
  a status_many call of N polls answers and writes what N get_queue_status calls would.
- The batcher: one call per room and turn, each caller its own row, failures reach every
  caller, a caller that gave up does not disturb the others.
- Real Redis, real pipelining client: 300 simultaneous joins are 300 distinct places in
  arrival order, in far fewer script calls than joins; 300 simultaneous polls likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from redis import exceptions as rx

from rooms.queue_store import BUCKET_MS, RATE_TAU_MS, QueueStore, join_result, queue_status
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.redis_pipeline import PipelinedRedis
from stagedoor.turn_batches import MAX_BATCH, TurnBatches
from tests.support.rooms import T0, Stores, room_config

BURST_S = 0.5
REFERENCE_STATUS = Path(__file__).with_name("get_queue_status_reference.lua")
TAKEN = ("outcome", "visitor_id", "created", "expiry_ms")

# ---------------------------------------------------------------- join_many == N x join_queue

room_states = st.fixed_dictionaries({
    "mode": st.sampled_from(["fifo", "fifo", "lottery", "passthrough", "closed"]),
    "paused": st.booleans(),
    "starts_in_ms": st.sampled_from([-60_000, -1, 0, 1, 2_000, 60_000]),
    "opens_in_ms": st.sampled_from([-3_600_000, -3_600_000, 500]),
    "closes_in_ms": st.sampled_from([0, 0, 0, 3_000]),
    "rate": st.sampled_from([0.5, 2.0, 20.0]),
    "max_active": st.integers(0, 6),
    "sold_out": st.sampled_from([False, False, False, True]),
    # the last tick's free tickets (stock-aware admission); None: the room admits by rate only
    "stock_free": st.one_of(st.none(), st.integers(0, 4)),
    "exists": st.sampled_from([True] * 9 + [False]),
})
batches = st.lists(st.tuples(st.integers(0, 1_500), st.integers(1, 9)), min_size=1, max_size=6)


def _entropy(draw_ints: list[int], n: int, offset: int) -> list[str]:
    args: list[str] = []
    for i in range(n):
        k = draw_ints[(offset + i) % len(draw_ints)]
        args += [repr(((k >> 3) | 1) / (1 << 53)), f"{(k ^ (offset + i)) & 0xFFFFFF:06x}"]
    return args


def _script_keys(keys: RedisKeys, room: str, now_ms: int) -> list[str]:
    """The six keys both join scripts and both status scripts take."""
    return [keys.room_config(room), keys.room_state(room), keys.room_waiting(room), keys.room_active(room),
            keys.room_evicted(room), keys.room_seen(room, now_ms // BUCKET_MS)]


def _join_keys(keys: RedisKeys, room: str, now_ms: int) -> list[str]:
    """The join scripts' keys: the six above, and the room's choosing set."""
    return [*_script_keys(keys, room, now_ms), keys.room_choosing(room)]


async def _state(redis: redis_asyncio.Redis, keys: RedisKeys, room: str, now_ms: int) -> dict[str, Any]:
    seen = keys.room_seen(room, now_ms // BUCKET_MS)
    return {
        "wait": await redis.zrange(keys.room_waiting(room), 0, -1, withscores=True),
        "active": await redis.zrange(keys.room_active(room), 0, -1, withscores=True),
        "choosing": await redis.zrange(keys.room_choosing(room), 0, -1, withscores=True),
        "st": await redis.hgetall(keys.room_state(room)),
        "seen": await redis.get(seen),
        "seen_expires": await redis.pttl(seen) > 0,
    }


@contextlib.asynccontextmanager
async def _twin_rooms(redis_url: str) -> AsyncIterator[Stores]:
    """Stores on their own key prefix (the rooms "batched" and "single" live there), loaded
    scripts; every key under the prefix is deleted afterwards."""
    redis = redis_asyncio.Redis.from_url(redis_url)
    keys = RedisKeys("tw" + uuid.uuid4().hex[:10])
    stores = Stores(redis, LuaScripts(redis), keys)
    try:
        await stores.scripts.load_all()
        yield stores
    finally:
        found = [k async for k in redis.scan_iter(match=f"{keys.prefix}:*")]
        if found:
            await redis.delete(*found)
        await redis.aclose()


async def _compare(redis_url: str, state: dict[str, Any], steps: list[tuple[int, int]], ints: list[int]) -> None:
    async with _twin_rooms(redis_url) as stores:
        redis, keys, calls = stores.redis, stores.keys, stores.calls
        for room in ("batched", "single") if state["exists"] else ():
            await stores.rooms.put(room_config(
                room, mode=state["mode"], paused=state["paused"], starts_at_ms=T0 + state["starts_in_ms"],
                opens_at_ms=T0 + state["opens_in_ms"],
                closes_at_ms=T0 + state["closes_in_ms"] if state["closes_in_ms"] else 0,
                rate_per_s=state["rate"], max_active=state["max_active"], session_ttl_s=2,
                abandon_after_s=30), T0)
            if state["sold_out"]:
                await redis.hset(keys.room_state(room), "sold_out", "1")
            if state["stock_free"] is not None:
                await redis.hset(keys.room_state(room), "stock_free", state["stock_free"])
        now, offset = T0, 0
        for dt, n in steps:
            now += dt
            args = _entropy(ints, n, offset)
            offset += n
            rows = await calls.script("join_many", _join_keys(keys, "batched", now),
                                      [now, BUCKET_MS, BURST_S, RATE_TAU_MS, *args])
            singles = [await calls.script("join_queue", _join_keys(keys, "single", now),
                                          ["", "", now, args[2 * i], BUCKET_MS, BURST_S, args[2 * i + 1], RATE_TAU_MS])
                       for i in range(n)]
            assert len(rows) == n
            for row in rows:
                event(f"outcome {join_result(row).outcome}")
            batched_state = await _state(redis, keys, "batched", now)
            single_state = await _state(redis, keys, "single", now)
            assert batched_state == single_state
            for row, single in zip(rows, singles, strict=True):
                got, want = join_result(row), join_result(single)
                assert [getattr(got, f) for f in TAKEN] == [getattr(want, f) for f in TAKEN]
                if got.outcome == "waiting":  # the place after the whole batch, in the same queue
                    rank = await redis.zrank(keys.room_waiting("single"), got.visitor_id)
                    assert got.position == rank + 1
                    assert got.waiting_total == len(single_state["wait"])
                else:  # admissions happen only while nobody waits, refusals write nothing
                    assert (got.position, got.waiting_total) == (want.position, want.waiting_total)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=room_states, steps=batches, ints=st.lists(st.integers(0, 2**56 - 1), min_size=1, max_size=20))
def test_join_many_is_join_queue_one_after_another(redis_url: str, state: dict[str, Any],
                                                    steps: list[tuple[int, int]], ints: list[int]) -> None:
    asyncio.run(_compare(redis_url, state, steps, ints))


# ---------------------------------------------------------------- status_many == N x get_queue_status

status_rooms = st.fixed_dictionaries({
    "mode": st.sampled_from(["fifo", "fifo", "lottery", "closed"]),
    "starts_in_ms": st.sampled_from([-60_000, 0, 60_000]),
    "closes_in_ms": st.sampled_from([0, 0, 500]),
    "sold_out": st.sampled_from([False, False, True]),
    "exists": st.sampled_from([True] * 9 + [False]),
})


async def _compare_statuses(redis_url: str, state: dict[str, Any], joined: int, admitted: int, evicted: list[int],
                            polls: list[list[int]], dt: int) -> None:
    async with _twin_rooms(redis_url) as stores:
        redis, keys, calls = stores.redis, stores.keys, stores.calls
        reference = redis.register_script(REFERENCE_STATUS.read_text(encoding="utf-8"))
        vids: list[str] = []
        for room in ("batched", "single"):
            await stores.rooms.put(room_config(room, mode="fifo", paused=True, starts_at_ms=T0 - 60_000,
                                               rate_per_s=1000, max_active=1000, abandon_after_s=30), T0)
            vids = [(await stores.join(room, T0 + i, suffix=f"{i:06x}", score=0.5)).visitor_id for i in range(joined)]
            await redis.hset(keys.room_config(room), "paused", "0")
            if admitted:
                await stores.queue.admit_tick(room, T0 + 100, max_batch=admitted, burst_s=10)
            for i in evicted:
                if i < len(vids):
                    await stores.queue.evict(room, vids[i])
            # then the room as the example has it
            if not state["exists"]:
                await redis.delete(keys.room_config(room))
                continue
            await redis.hset(keys.room_config(room), mapping={
                "mode": state["mode"], "starts_at": T0 + state["starts_in_ms"],
                "closes_at": T0 + state["closes_in_ms"] if state["closes_in_ms"] else 0})
            if state["sold_out"]:
                await redis.hset(keys.room_state(room), "sold_out", "1")
        vids.append("zzzz_000000")  # a visitor the room never saw (a token from a deleted room)
        now = T0 + 1_000
        for batch in polls:
            now += dt
            chosen = [vids[i % len(vids)] for i in batch]

            args: list[Any] = []
            for v in chosen:
                args += [v, int(v.split("_")[0], 36)]
            rows = await calls.script("status_many", _script_keys(keys, "batched", now),
                                      [now, BUCKET_MS, RATE_TAU_MS, *args])
            singles = [await reference(keys=_script_keys(keys, "single", now),
                                       args=[v, int(v.split("_")[0], 36), now, BUCKET_MS, RATE_TAU_MS])
                       for v in chosen]
            for row in rows:
                event(f"state {queue_status(row).state}")
            assert [queue_status(r) for r in rows] == [queue_status(r) for r in singles]
            assert await _state(redis, keys, "batched", now) == await _state(redis, keys, "single", now)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=status_rooms, joined=st.integers(1, 8), admitted=st.integers(0, 3),
       evicted=st.lists(st.integers(0, 8), max_size=2),
       polls=st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=8), min_size=1, max_size=4),
       dt=st.sampled_from([0, 7, 2_500, 5_000]))
def test_status_many_is_get_queue_status_one_after_another(redis_url: str, state: dict[str, Any], joined: int,
                                                            admitted: int, evicted: list[int],
                                                            polls: list[list[int]], dt: int) -> None:
    asyncio.run(_compare_statuses(redis_url, state, joined, admitted, evicted, polls, dt))


# ---------------------------------------------------------------- the batcher


class Recorder:
    """Stands in for the Redis call only: records what the batcher sends, answers rows."""

    def __init__(self, fail: Exception | None = None, rows: Any = None) -> None:
        self.calls: list[tuple[str, int, list[str]]] = []
        self.flushes = 0
        self.fail = fail
        self.rows = rows

    async def send(self, room: str, now_ms: int, args: list[str]) -> Any:
        self.calls.append((room, now_ms, list(args)))
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        if self.rows is not None:
            return self.rows
        return [[b"waiting", f"{room}-{args[2 * i + 1]}".encode(), 1, i + 1, len(args) // 2, 0]
                for i in range(len(args) // 2)]

    def after_send(self) -> None:
        self.flushes += 1


async def test_one_call_per_room_and_turn_each_caller_its_row() -> None:
    rec = Recorder()
    batches = TurnBatches(rec.send, rec.after_send)
    futures = [batches.submit("a", T0 + i, "0.5", f"s{i}") for i in range(5)]
    futures += [batches.submit("b", T0, "0.5", "t0")]
    rows = await asyncio.gather(*futures)
    assert sorted((c[0], len(c[2]) // 2) for c in rec.calls) == [("a", 5), ("b", 1)]
    assert next(c for c in rec.calls if c[0] == "a")[1] == T0 + 4  # timed by its latest join
    assert [r[1] for r in rows] == [f"a-s{i}".encode() for i in range(5)] + [b"b-t0"]
    assert [r[3] for r in rows[:5]] == [1, 2, 3, 4, 5]
    assert rec.flushes == 1
    # the next turn's joins make a new batch
    assert (await batches.submit("a", T0, "0.5", "later"))[1] == b"a-later"
    assert len(rec.calls) == 3


async def test_a_full_batch_leaves_at_once() -> None:
    rec = Recorder()
    batches = TurnBatches(rec.send, rec.after_send, max_batch=4)
    futures = [batches.submit("a", T0, "0.5", f"s{i}") for i in range(10)]
    await asyncio.gather(*futures)
    assert [len(c[2]) // 2 for c in rec.calls] == [4, 4, 2]
    assert MAX_BATCH >= 32


async def test_a_failed_call_fails_every_join_of_its_batch() -> None:
    rec = Recorder(fail=rx.ConnectionError("Redis connection lost"))
    batches = TurnBatches(rec.send)
    results = await asyncio.gather(*(batches.submit("a", T0, "0.5", f"s{i}") for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, rx.ConnectionError) for r in results)


async def test_a_reply_of_the_wrong_shape_fails_the_batch() -> None:
    rec = Recorder(rows=[[b"waiting", b"x", 1, 1, 1, 0]])  # one row for two joins
    batches = TurnBatches(rec.send)
    results = await asyncio.gather(*(batches.submit("a", T0, "0.5", f"s{i}") for i in range(2)),
                                   return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 rows for 2 calls" in str(r) for r in results)


async def test_a_caller_that_gave_up_leaves_the_others_alone() -> None:
    rec = Recorder()
    batches = TurnBatches(rec.send)
    gone = batches.submit("a", T0, "0.5", "gone")
    kept = batches.submit("a", T0, "0.5", "kept")
    gone.cancel()
    assert (await kept)[1] == b"a-kept"
    assert len(rec.calls[0][2]) == 4  # the visitor who left was still sent (as an unbatched call would be)


async def test_a_call_refused_outright_fails_its_joins() -> None:
    def refuse(*_: Any) -> Any:
        raise rx.ConnectionError("closed")

    batches = TurnBatches(refuse)
    with pytest.raises(rx.ConnectionError):
        await batches.submit("a", T0, "0.5", "s")


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TurnBatches(Recorder().send, max_batch=0)


# ---------------------------------------------------------------- real Redis, pipelining client


async def test_simultaneous_new_joins_are_distinct_places_in_few_calls(stores: Stores, redis_url: str) -> None:
    await stores.rooms.put(room_config("crowd", paused=True, starts_at_ms=T0 - 60_000), T0)
    hot = RedisCalls(PipelinedRedis(redis_url, stores.scripts))
    queue = QueueStore(hot, stores.keys)
    before = await _evalsha_calls(stores.redis)
    try:
        results = await asyncio.gather(*(queue.join("crowd", None, T0 + 1, burst_s=BURST_S) for _ in range(300)))
    finally:
        await hot.aclose()
    calls = await _evalsha_calls(stores.redis) - before
    assert all(r.outcome == "waiting" and r.created for r in results)
    assert len({r.visitor_id for r in results}) == 300
    assert sorted(r.position for r in results) == list(range(1, 301))
    # arrival order is queue order: the i-th caller got the i-th place
    assert [r.position for r in results] == list(range(1, 301))
    assert await stores.waiting_ids("crowd") == [r.visitor_id for r in results]
    assert calls <= 300 // 32  # batches of up to MAX_JOIN_BATCH, not one call per join


async def test_simultaneous_polls_answer_each_visitor_in_few_calls(stores: Stores, redis_url: str) -> None:
    await stores.rooms.put(room_config("polls", paused=True, starts_at_ms=T0 - 60_000), T0)
    joined = [await stores.join("polls", T0) for _ in range(300)]
    hot = RedisCalls(PipelinedRedis(redis_url, stores.scripts))
    queue = QueueStore(hot, stores.keys)
    before = await _evalsha_calls(stores.redis)
    try:
        statuses = await asyncio.gather(*(queue.status("polls", j.visitor_id, T0 + 10) for j in reversed(joined)))
    finally:
        await hot.aclose()
    calls = await _evalsha_calls(stores.redis) - before
    assert [(s.state, s.position, s.waiting_total) for s in statuses] == [
        ("waiting", p, 300) for p in range(300, 0, -1)]
    assert calls <= 300 // 32


async def test_batched_joins_fill_an_empty_room_up_to_its_capacity(stores: Stores, redis_url: str) -> None:
    # selling, nobody waiting, a full token bucket of 5 and room for 3 shoppers: the first 3 of
    # the batch are admitted at once, everyone after them queues in arrival order
    await stores.rooms.put(room_config("open", rate_per_s=10, max_active=3), T0 - 60_000)
    hot = RedisCalls(PipelinedRedis(redis_url, stores.scripts))
    queue = QueueStore(hot, stores.keys)
    try:
        results = await asyncio.gather(*(queue.join("open", None, T0, burst_s=BURST_S) for _ in range(8)))
    finally:
        await hot.aclose()
    assert [r.outcome for r in results] == ["admitted"] * 3 + ["waiting"] * 5
    assert [r.position for r in results[3:]] == [1, 2, 3, 4, 5]
    assert sorted(await stores.active_ids("open")) == sorted(r.visitor_id for r in results[:3])


async def _evalsha_calls(redis: redis_asyncio.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
