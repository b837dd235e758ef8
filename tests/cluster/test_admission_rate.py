"""Admission rate on a Redis Cluster: two controller replicas (each its own cluster client) share
the room's token bucket on the room's master and admit the configured rate, within 5 %."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from admission.controller import AdmissionController
from admission.metrics import AdmissionMetrics
from rooms.queue_store import QueueStore
from rooms.store import Room, RoomPatch, RoomStore
from stagedoor.connections import make_redis
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.tasks import stop_tasks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
RATE = 60.0
WINDOW_S = 6.0


async def test_two_controllers_on_a_cluster_admit_the_configured_rate(make_settings: Any,
                                                                      redis_cluster_url: str) -> None:
    settings = make_settings(redis_url=redis_cluster_url, redis_cluster=True, admission_tick_ms=100)
    keys = RedisKeys(settings.redis_key_prefix)
    clients = [make_redis(settings) for _ in range(3)]
    try:
        stores = []
        for client in clients:
            scripts = LuaScripts(client)
            await scripts.load_all()
            calls = RedisCalls.from_settings(settings, client, scripts)
            stores.append((RoomStore(calls, keys), QueueStore(calls, keys)))
        rooms, queue = stores[0]
        now_ms = int(time.time() * 1000)
        await rooms.put(Room(room="hot", event_id=None, mode="fifo", opens_at_ms=now_ms - 60_000,
                             starts_at_ms=now_ms - 1, closes_at_ms=0, rate_per_s=RATE, max_active=100_000,
                             session_ttl_s=600, abandon_after_s=0, pow_difficulty=0, shop_url=None, paused=True),
                        now_ms)
        for _ in range(int(RATE * (WINDOW_S + 3))):
            await queue.join("hot", None, now_ms, burst_s=settings.admission_burst_s)
        controllers = [AdmissionController(settings, r, q, AdmissionMetrics()) for r, q in stores[1:]]
        tasks = [asyncio.create_task(c.run()) for c in controllers]
        try:
            await rooms.patch("hot", RoomPatch(paused=False), int(time.time() * 1000))
            await asyncio.sleep(1.0)  # past the initial burst
            a0, t0 = int(await clients[0].hget(keys.room_state("hot"), "admitted_total") or 0), time.monotonic()
            await asyncio.sleep(WINDOW_S)
            a1, t1 = int(await clients[0].hget(keys.room_state("hot"), "admitted_total") or 0), time.monotonic()
        finally:
            await stop_tasks(tasks)
            assert all(task.done() for task in tasks), "a controller ignored cancellation"
        admitted, expected = a1 - a0, RATE * (t1 - t0)
        assert abs(admitted - expected) <= 0.05 * expected, (admitted, expected)
        assert int(await clients[0].zcard(keys.room_waiting("hot"))) > 0  # the queue never ran dry
    finally:
        for client in clients:
            await client.aclose()
