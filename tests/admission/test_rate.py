"""Admission rate and capacity with real controllers ticking on the wall clock.

Each "replica" is an AdmissionController with its own Redis connection, as separate
processes would have; they coordinate only through the room's token bucket in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from admission.controller import AdmissionController
from admission.metrics import AdmissionMetrics
from rooms.queue_store import QueueStore
from rooms.store import Room, RoomStore
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from stagedoor.tasks import stop_tasks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _room(rate: float, max_active: int, now_ms: int) -> Room:
    return Room(room="hot", event_id=None, mode="fifo", opens_at_ms=now_ms - 60_000, starts_at_ms=now_ms - 1,
                closes_at_ms=0, rate_per_s=rate, max_active=max_active, session_ttl_s=600, abandon_after_s=0,
                pow_difficulty=0, shop_url=None, paused=True)


@contextlib.asynccontextmanager
async def replicas(n: int, settings: Settings, redis_url: str) -> AsyncIterator[list[AdmissionController]]:
    clients = [redis_asyncio.Redis.from_url(redis_url) for _ in range(n)]
    controllers = []
    for client in clients:
        scripts = LuaScripts(client)
        await scripts.load_all()
        keys = RedisKeys(settings.redis_key_prefix)
        calls = RedisCalls.batched(client, scripts)
        controllers.append(AdmissionController(settings, RoomStore(calls, keys), QueueStore(calls, keys),
                                               AdmissionMetrics()))
    tasks = [asyncio.create_task(c.run()) for c in controllers]
    try:
        yield controllers
    finally:
        # A controller that swallowed its cancellation would hang the test until pytest-timeout;
        # stop_tasks re-cancels, bounds the wait, and the assert says so.
        await stop_tasks(tasks)
        assert all(task.done() for task in tasks), "a controller ignored cancellation"
        for client in clients:
            await asyncio.wait_for(client.aclose(), 10)


async def _setup(redis_client: Any, settings: Settings, rate: float, max_active: int, visitors: int) -> Any:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    keys = RedisKeys(settings.redis_key_prefix)
    calls = RedisCalls.batched(redis_client, scripts)
    rooms, queue = RoomStore(calls, keys), QueueStore(calls, keys)
    now_ms = int(time.time() * 1000)
    await rooms.put(_room(rate, max_active, now_ms), now_ms)
    for _ in range(visitors):
        await queue.join("hot", None, now_ms, burst_s=settings.admission_burst_s)
    return rooms, queue, keys


async def _admitted(redis_client: Any, keys: RedisKeys) -> int:
    return int(await redis_client.hget(keys.room_state("hot"), "admitted_total") or 0)


@pytest.mark.parametrize("n_replicas", [1, 3])
async def test_admitted_count_over_10_s_is_within_5_percent_of_the_rate(n_replicas: int, make_settings: Any,
                                                                       redis_url: str, redis_client: Any) -> None:
    rate = 40.0
    settings = make_settings(admission_tick_ms=100)
    rooms, _, keys = await _setup(redis_client, settings, rate, 100_000, 800)
    async with replicas(n_replicas, settings, redis_url):
        await rooms.patch("hot", _unpause(), int(time.time() * 1000))
        await asyncio.sleep(1.5)  # past the initial burst
        a0, t0 = await _admitted(redis_client, keys), time.monotonic()
        await asyncio.sleep(10)
        a1, t1 = await _admitted(redis_client, keys), time.monotonic()
    admitted, expected = a1 - a0, rate * (t1 - t0)
    assert abs(admitted - expected) <= 0.05 * rate * 10, (admitted, expected)


def _unpause() -> Any:
    from rooms.store import RoomPatch

    return RoomPatch(paused=False)


async def test_max_active_is_never_exceeded_with_three_replicas_and_finishing_shoppers(
        make_settings: Any, redis_url: str, redis_client: Any) -> None:
    max_active = 12
    settings = make_settings(admission_tick_ms=20)
    rooms, queue, keys = await _setup(redis_client, settings, 400.0, max_active, 600)
    peak, samples, finished = 0, 0, 0
    rng = random.Random(3)
    async with replicas(3, settings, redis_url):
        await rooms.patch("hot", _unpause(), int(time.time() * 1000))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            now_ms = int(time.time() * 1000)
            live = await redis_client.zrangebyscore(keys.room_active("hot"), f"({now_ms}", "+inf")
            peak, samples = max(peak, len(live)), samples + 1
            if live and rng.random() < 0.5:  # shoppers finish their purchase at random moments
                finished += await queue.finish("hot", rng.choice(live).decode(), now_ms)
            await asyncio.sleep(0.003)
    assert peak == max_active, peak  # reached, never exceeded
    admitted = await _admitted(redis_client, keys)
    assert finished > 50, finished
    assert finished + max_active - 3 <= admitted <= finished + max_active, (finished, admitted)
    assert samples > 200
