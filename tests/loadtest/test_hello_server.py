"""The bare-stack server used for the raw limits: its batching Redis client answers each caller; its
purchase after a charge's wait holds no connection meanwhile."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as redis_asyncio

from loadtest.hello_server import JOIN_LIKE_LUA, Batcher


async def test_batched_evalsha_calls_get_their_own_answers(redis_client: redis_asyncio.Redis,
                                                           redis_prefix: str) -> None:
    sha = await redis_client.script_load(JOIN_LIKE_LUA)
    keys = (f"{redis_prefix}:{{room:b}}:seq", f"{redis_prefix}:{{room:b}}:queue")
    batcher = Batcher(redis_client)
    ranks = await asyncio.gather(*(batcher.evalsha(sha, 2, *keys, f"v{i}") for i in range(50)))
    assert sorted(ranks) == list(range(50))
    assert await redis_client.zcard(keys[1]) == 50
    again = await batcher.evalsha(sha, 2, *keys, "v7")  # ZADD NX: the place is kept
    assert again == await redis_client.zrank(keys[1], "v7")


async def test_a_failing_call_in_a_batch_fails_alone(redis_client: redis_asyncio.Redis, redis_prefix: str) -> None:
    sha = await redis_client.script_load(JOIN_LIKE_LUA)
    keys = (f"{redis_prefix}:{{room:c}}:seq", f"{redis_prefix}:{{room:c}}:queue")
    batcher = Batcher(redis_client)
    good = batcher.evalsha(sha, 2, *keys, "v1")
    bad = batcher.evalsha("0" * 40, 2, *keys, "v2")  # unknown script: NOSCRIPT
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert results[0] == 0
    assert isinstance(results[1], redis_asyncio.ResponseError)


async def test_pipelined_evalsha_handler_answers_each_request(aiohttp_client: Any, redis_url: str,
                                                              redis_client: redis_asyncio.Redis) -> None:
    """/evalsha_pipelined (the raw limit for a handler making one call through our pipelining
    client): concurrent requests each get their own rank from the one shared connection."""
    from loadtest.hello_server import JOIN_KEYS, create_app

    await redis_client.delete(*JOIN_KEYS)
    try:
        client = await aiohttp_client(create_app(redis_url, "t"))

        async def one() -> int:
            response = await client.get("/evalsha_pipelined")
            assert response.status == 200
            return int(await response.text())

        ranks = await asyncio.gather(*(one() for _ in range(40)))
        assert sorted(ranks) == list(range(40))
    finally:
        await redis_client.delete(*JOIN_KEYS)


async def test_the_purchase_after_a_charge_waits_without_a_connection_and_commits_each(
        aiohttp_client: Any, database_url: str) -> None:
    """/purchase_cte_charged (the raw limit beside purchase_gateway_latency): purchases that wait
    for their charge overlap, more of them than the pool has connections, and each commits."""
    import asyncpg

    from loadtest.hello_server import POOL_SIZE, create_app
    from loadtest.limits import PG_SCHEMA

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(PG_SCHEMA)
        client = await aiohttp_client(create_app(None, "t", database_url))
        purchases, charge_ms = 4 * POOL_SIZE, 250

        async def one() -> int:
            response = await client.post(f"/purchase_cte_charged?charge_ms={charge_ms}")
            await response.read()
            return response.status

        started = time.perf_counter()
        statuses = await asyncio.gather(*(one() for _ in range(purchases)))
        elapsed = time.perf_counter() - started
        assert statuses == [201] * purchases
        assert await conn.fetchval("SELECT count(*) FROM bench_orders") == purchases
        assert await conn.fetchval("SELECT count(*) FROM bench_tickets") == 2 * purchases
        # one wait for all of them: a connection held through the wait would make four rounds of it
        assert charge_ms / 1000 <= elapsed < 4 * charge_ms / 1000, elapsed
    finally:
        await conn.close()
