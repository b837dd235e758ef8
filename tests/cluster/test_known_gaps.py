"""Cluster behaviour that once differed from a single Redis.

``HoldStore.update_meta`` used WATCH/EXISTS/MULTI on a pipeline; redis-py 8.1's async cluster
pipeline does not run a command issued in watch mode, so on a cluster the "not loaded" check
never fired and the update wrote a stray meta hash. It is now one script
(lua/update_inventory_meta.lua) that behaves the same on both.
"""

from __future__ import annotations

from stagedoor.connections import make_redis
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from ticketing.holds.store import HoldStore


async def test_updating_the_meta_of_an_event_not_loaded_writes_nothing_on_a_cluster(
        cluster_settings: Settings) -> None:
    client = make_redis(cluster_settings)
    try:
        scripts = LuaScripts(client)
        await scripts.load_all()
        keys = RedisKeys(cluster_settings.redis_key_prefix)
        await HoldStore(RedisCalls.from_settings(cluster_settings, client, scripts), keys).update_meta(
            "424242", {"max_per_order": 2})
        assert await client.exists(keys.inventory_meta("424242")) == 0
    finally:
        await client.aclose()
