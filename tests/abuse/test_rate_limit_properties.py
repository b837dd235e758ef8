"""Property: whatever the traffic, a bucket never lets through more than burst + rate x window,
and a refused request retried after the announced wait (and nothing else in between) passes."""

from __future__ import annotations

import uuid

import hypothesis
import redis.asyncio as redis_asyncio
from hypothesis import HealthCheck
from hypothesis import strategies as st

from stagedoor.lua import LuaScripts
from stagedoor.rate_limit import Rate, RateLimitStore
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys

T0 = 1_800_000_000_000

traffic = st.lists(st.tuples(st.integers(0, 3_000), st.integers(1, 3)), min_size=1, max_size=40)  # (gap_ms, cost)
rates = st.builds(Rate, burst=st.integers(1, 10), period_ms=st.integers(1, 20_000))
# One client for all examples (the fixture is function-scoped on purpose); each example uses its own key.
SHARED_CLIENT = hypothesis.settings(max_examples=60, deadline=None, database=None,
                                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SHARED_CLIENT
@hypothesis.given(rate=rates, requests=traffic)
async def test_no_window_admits_more_than_burst_plus_refill(redis_client: redis_asyncio.Redis, redis_prefix: str,
                                                            rate: Rate, requests: list[tuple[int, int]]) -> None:
    store = RateLimitStore(RedisCalls.batched(redis_client, LuaScripts(redis_client)), RedisKeys(redis_prefix))
    key = store.bucket_key("search", "ip", uuid.uuid4().hex)
    try:
        now, admitted = T0, []
        for gap, cost in requests:
            now += gap
            cost = min(cost, rate.burst)
            decision = await store.take(key, rate, now, cost)
            if decision.allowed:
                admitted.append((now, cost))
            else:
                assert decision.wait_ms >= 1
        for i, (start, _) in enumerate(admitted):
            taken = 0
            for end, cost in admitted[i:]:
                taken += cost
                refill = (end - start) * rate.burst / rate.period_ms
                assert taken <= rate.burst + refill + 1e-3, (start, end, taken)
    finally:
        await redis_client.delete(key)


@SHARED_CLIENT
@hypothesis.given(rate=rates, drain=st.integers(1, 30), cost=st.integers(1, 10))
async def test_a_retry_after_the_announced_wait_passes(redis_client: redis_asyncio.Redis, redis_prefix: str,
                                                       rate: Rate, drain: int, cost: int) -> None:
    store = RateLimitStore(RedisCalls.batched(redis_client, LuaScripts(redis_client)), RedisKeys(redis_prefix))
    key = store.bucket_key("login", "subject", uuid.uuid4().hex)
    try:
        cost = min(cost, rate.burst)
        for _ in range(drain):
            await store.take(key, rate, T0, 1)
        first = await store.take(key, rate, T0, cost)
        if not first.allowed:
            assert (await store.take(key, rate, T0 + first.wait_ms, cost)).allowed
    finally:
        await redis_client.delete(key)
