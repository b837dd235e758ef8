"""update_inventory_meta: fields of a loaded inventory change; an unloaded one is left alone
(PostgreSQL has the change and the next load builds from it)."""

from __future__ import annotations

import redis.asyncio as redis_asyncio

from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from ticketing.holds.store import HoldStore
from ticketing.holds.types import InventoryMeta, StagedTier


async def test_meta_updates_a_loaded_inventory_and_never_creates_one(redis_client: redis_asyncio.Redis,
                                                                      redis_prefix: str) -> None:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    keys = RedisKeys(redis_prefix)
    store = HoldStore(RedisCalls.batched(redis_client, scripts), keys)
    await store.update_meta("7", {"max_per_order": 2})
    assert await redis_client.exists(keys.inventory_meta("7")) == 0

    meta = InventoryMeta(status="on_sale", currency="EUR", max_per_order=4, hold_ttl_ms=60_000)
    await store.load("7", meta, [StagedTier(code="A", price=10, capacity=0, sold=0, general_admission=False)],
                     [("s1", "A", False)], "g")
    await store.update_meta("7", {"max_per_order": 2, "status": "sold_out"})
    stored = await redis_client.hgetall(keys.inventory_meta("7"))
    assert stored[b"max_per_order"] == b"2" and stored[b"status"] == b"sold_out"
    assert stored[b"currency"] == b"EUR"  # other fields untouched
