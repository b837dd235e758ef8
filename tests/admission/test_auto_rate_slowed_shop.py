"""The automatic rate against a real, slowed shop: the ticketing app serves admitted fans' holds
(its shopper-session check delayed, then failing, by an injected fault), records its health into
Redis, and the real admission controller, ticking on the wall clock, backs the room's rate off
to its minimum and, once the shop is healthy again, brings it back to its maximum."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from admission.auto_rate import AutoRate
from admission.controller import AdmissionController
from admission.metrics import AdmissionMetrics
from admission.rate_control import RateLaw
from rooms.auto_rate_store import AutoRateStore
from rooms.queue_store import QueueStore
from rooms.shop_health import ShopHealthReader
from rooms.store import RoomStore
from stagedoor.admission_tokens import mint_admission_token
from stagedoor.keys import KeyRing
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from stagedoor.tasks import stop_tasks
from tests.support.rooms import room_config
from ticketing.holds import shopper_session

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# A fast law, so the test takes seconds: a step every 0.5 s from the last second's requests.
LAW = RateLaw(period_s=0.5, window_s=1, min_requests=3, increase_fraction=0.25)
MIN, MAX = 2.0, 20.0
# The 600 ms delay puts a request in the histogram's 1 s bucket, over a 600 ms target; the shop's
# own latency, even on a busy test machine, stays in the 500 ms bucket or below.
TARGET_P99_MS = 600


class Fault:
    """What the shop's shopper-session check suffers now: nothing, a delay, or a failure."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.failing = False

    def wrap(self, real: Callable[..., Awaitable[bool]]) -> Callable[..., Awaitable[bool]]:
        async def faulty(*args: Any) -> bool:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.failing:
                raise RedisConnectionError("injected: the session store is down")
            return await real(*args)
        return faulty


@contextlib.asynccontextmanager
async def controller(settings: Settings, redis_url: str) -> AsyncIterator[AdmissionController]:
    client = redis_asyncio.Redis.from_url(redis_url)
    scripts = LuaScripts(client)
    await scripts.load_all()
    keys = RedisKeys(settings.redis_key_prefix)
    calls = RedisCalls.batched(client, scripts)
    metrics = AdmissionMetrics()
    auto = AutoRate(AutoRateStore(calls, keys), ShopHealthReader(calls, keys), metrics, LAW)
    ctl = AdmissionController(settings, RoomStore(calls, keys), QueueStore(calls, keys), metrics, auto_rate=auto)
    task = asyncio.create_task(ctl.run())
    try:
        yield ctl
    finally:
        await stop_tasks([task])
        await client.aclose()


async def test_the_rate_backs_off_from_a_slowed_shop_and_recovers(
        service_client: Any, make_settings: Any, make_event: Any, create_user: Any, keyring: KeyRing,
        redis_url: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(rate_limits_enabled=False, admission_tick_ms=50)
    shop = await service_client("ticketing", settings)
    event = await make_event(shop)
    fan = await create_user()
    keys = RedisKeys(settings.redis_key_prefix)
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    calls = RedisCalls.batched(redis_client, scripts)
    now_ms = int(time.time() * 1000)
    await RoomStore(calls, keys).put(room_config(
        "hot", opens_at_ms=now_ms - 60_000, starts_at_ms=now_ms - 1000, rate_per_s=MAX, max_active=1_000_000,
        rate_mode="auto", rate_min_per_s=MIN, rate_max_per_s=MAX, target_p99_ms=TARGET_P99_MS), now_ms)
    queue = QueueStore(calls, keys)
    for _ in range(1500):  # more than the test admits: fans are always waiting, so the rate is what limits
        await queue.join("hot", None, now_ms, burst_s=0.5)

    fault = Fault()
    monkeypatch.setattr(shopper_session, "is_active", fault.wrap(shopper_session.is_active))
    token, _ = mint_admission_token(keyring, visitor_id="1_fan0", room="hot", event_id=str(event["id"]), ttl_s=600)
    headers = {**fan.headers, "X-Admission-Token": token}
    statuses: dict[int, int] = {}

    async def fan_loop() -> None:
        while True:
            resp = await shop.post(f"/api/events/{event['id']}/holds", json={"tier": "A", "quantity": 1},
                                   headers=headers)
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            await asyncio.sleep(0.03)

    async def rate() -> float:
        return float(await redis_client.hget(keys.room_config("hot"), "rate"))

    async def watch_until(done: Callable[[float], bool], timeout_s: float) -> list[float]:
        trail = [await rate()]
        deadline = time.monotonic() + timeout_s
        while not done(trail[-1]) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            trail.append(await rate())
        return trail

    fans = [asyncio.create_task(fan_loop()) for _ in range(6)]
    try:
        async with controller(settings, redis_url):
            healthy_start = await watch_until(lambda r: r < MAX, 2.0)  # healthy at the maximum: it stays there
            fault.delay_s = 0.6
            slowed = await watch_until(lambda r: r == MIN, 20.0)
            fault.delay_s = 0.0
            recovered = await watch_until(lambda r: r == MAX, 20.0)
            fault.failing = True  # the same with errors instead of latency
            failing = await watch_until(lambda r: r == MIN, 20.0)
            fault.failing = False
            recovered_again = await watch_until(lambda r: r == MAX, 20.0)
    finally:
        for task in fans:
            task.cancel()
        await asyncio.gather(*fans, return_exceptions=True)

    assert set(healthy_start) == {MAX}
    for trail, end in ((slowed, MIN), (failing, MIN)):
        assert trail[-1] == end, trail
        assert all(b <= a for a, b in itertools.pairwise(trail)), trail  # only ever down
        assert len(set(trail)) >= 4, trail  # in several multiplicative steps, not one jump
    for trail in (recovered, recovered_again):
        assert trail[-1] == MAX, trail
        assert all(b >= a for a, b in itertools.pairwise(trail)), trail  # only ever up
    assert statuses.get(503, 0) > 0  # the failing phase did fail the fans' requests
    # PostgreSQL was never involved: the room's rate_per_s is the organizer's, the auto rate Redis's alone
    assert await redis_client.hget(keys.room_config("hot"), "rate_start") == b"20.0"
