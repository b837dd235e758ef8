"""The batched path of the stores' Redis calls (``RedisCalls.batched``, stagedoor/script_batcher.py):
concurrent calls share one pipeline, each keeps its own reply or error, and a NOSCRIPT after
SCRIPT FLUSH (own server) is retried transparently."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as redis_asyncio
from redis.exceptions import ResponseError

from stagedoor.embedded import EmbeddedRedis
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from ticketing.holds.errors import SeatUnavailable
from ticketing.holds.store import HoldStore
from ticketing.holds.types import InventoryMeta, StagedTier


async def test_concurrent_holds_batch_and_survive_a_script_flush(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r", persist=False).start()
    client = redis_asyncio.Redis.from_url(server.url)
    try:
        scripts = LuaScripts(client)
        await scripts.load_all()
        store = HoldStore(RedisCalls.batched(client, scripts), RedisKeys("b"))
        meta = InventoryMeta(status="on_sale", currency="EUR", max_per_order=4, hold_ttl_ms=60_000)
        await store.load("1", meta, [StagedTier(code="A", price=10, capacity=0, sold=0, general_admission=False)],
                         [(f"s{i}", "A", False) for i in range(1, 11)], "g")
        await client.script_flush()  # our own server only
        calls = [store.hold_seats("1", f"1-{i:024x}", f"u{i}", [f"s{i % 10 + 1}"], 1_000, True) for i in range(20)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 10 and all(isinstance(e, SeatUnavailable) for e in lost)
        assert len({h.seats[0] for h in won}) == 10
    finally:
        await client.aclose()
        server.stop()


async def test_each_call_of_a_batch_gets_its_own_error(redis_client: redis_asyncio.Redis, redis_prefix: str) -> None:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    batcher = RedisCalls.batched(redis_client, scripts)
    key = f"{redis_prefix}:{{ev:1}}:inv:tiers"
    await redis_client.set(key, "not a hash")  # a wrong-type key makes one script fail inside Redis
    # (the calls below are coroutines: they run, batched together, at the gather)
    good = batcher.script("release_hold", [f"{redis_prefix}:{{ev:2}}:{k}" for k in "abcdef"], ["x", 1])
    bad = batcher.script("sweep_expired_holds", [key] + [f"{redis_prefix}:{{ev:1}}:{k}" for k in "bcdefg"],
                         [1, 10, 0, 10])
    await redis_client.zadd(f"{redis_prefix}:{{ev:1}}:c", {"1-" + "0" * 24: 0})
    await redis_client.hset(f"{redis_prefix}:{{ev:1}}:d", "1-" + "0" * 24,
                            '{"u":"u","st":"held","k":"g","t":"A","q":1,"i":{},"tot":1,"cur":"EUR","c":0,"e":0}')
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert results[0] == [b"not_found"]
    assert isinstance(results[1], ResponseError)  # and the other call of the same pipeline was unaffected


async def test_grouped_commands_stay_in_order_in_one_pipeline_even_at_the_batch_limit(
        redis_client: redis_asyncio.Redis, redis_prefix: str) -> None:
    """The Idempotency-Key claim is SET NX then GET of the same key: both must travel together,
    in order, even when the queue is about to hit max_batch."""
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    batcher = RedisCalls.batched(redis_client, scripts, max_batch=3)
    key = f"{redis_prefix}:{{idem:u}}:k"
    filler = [batcher.command("INCR", f"{redis_prefix}:n{i}") for i in range(2)]
    claims = [batcher.commands(("SET", key, f"v{i}", "NX", "EX", 60), ("GET", key)) for i in range(10)]
    results = await asyncio.gather(*filler, *claims)
    assert results[:2] == [1, 1]
    pairs = results[2:]
    winners = [i for i, (claimed, _) in enumerate(pairs) if claimed]
    assert len(winners) == 1
    # every GET ran after its own SET: the winner reads its own value, the others the winner's
    assert {current for _, current in pairs} == {f"v{winners[0]}".encode()}


async def test_a_plain_command_error_is_that_callers_alone(redis_client: redis_asyncio.Redis,
                                                           redis_prefix: str) -> None:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    batcher = RedisCalls.batched(redis_client, scripts)
    await redis_client.set(f"{redis_prefix}:s", "text")
    ok = batcher.command("SET", f"{redis_prefix}:t", "1", "EX", 60)
    bad = batcher.command("HGET", f"{redis_prefix}:s", "f")  # wrong type
    results = await asyncio.gather(ok, bad, return_exceptions=True)
    assert results[0] is True and isinstance(results[1], ResponseError)
    assert await redis_client.get(f"{redis_prefix}:t") == b"1"
