"""The Lua loader and the stores' Redis calls (batched through the cluster client's pipelines) on a
real 3-master Redis Cluster: scripts are on every master, EVALSHA is routed by key, a master that
lost its script cache is reloaded transparently, and the sweeper's restart check reads every
master's run_id."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.cluster import RedisCluster

from rooms.queue_store import BUCKET_MS, QueueStore
from stagedoor.connections import make_redis, redis_run_id
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings

ROOMS = [f"room-{i}" for i in range(24)]


def _masters_of(client: RedisCluster, keys: list[str]) -> set[str]:
    return {client.get_node_from_key(k).name for k in keys}


async def _rooms_and_a_master_without_scripts(client: RedisCluster, keys: RedisKeys) -> tuple[LuaScripts, Any]:
    """Every script loaded, the ROOMS configured (spread over all three masters), then the master
    of the first room's keys loses its script cache, as after a restart or a failover."""
    scripts = LuaScripts(client)
    await scripts.load_all()
    assert len(_masters_of(client, [keys.room_config(r) for r in ROOMS])) == 3  # batches span the cluster
    for room in ROOMS:
        await client.hset(keys.room_config(room), mapping={"mode": "fifo", "abandon_ms": 60_000})
    victim = client.get_node_from_key(keys.room_config(ROOMS[0]))
    await client.execute_command("SCRIPT FLUSH", target_nodes=victim)
    return scripts, victim


async def test_the_services_client_is_a_cluster_client_with_every_script_on_every_master(
        cluster_settings: Settings) -> None:
    client = make_redis(cluster_settings)
    try:
        assert isinstance(client, RedisCluster)
        scripts = LuaScripts(client)
        await scripts.load_all()
        shas = [scripts.sha(n) for n in scripts.names]
        masters = client.get_primaries()
        assert len(masters) == 3
        for node in masters:
            per_node = await client.execute_command("SCRIPT EXISTS", *shas, target_nodes=node)
            assert list(per_node) == [1] * len(shas), node.name
        run_id = await redis_run_id(client)
        assert run_id.count("=") == 3 and len(set(run_id.split(","))) == 3
    finally:
        await client.aclose()


async def test_batched_calls_spanning_every_master_survive_a_master_losing_its_scripts(
        cluster_settings: Settings) -> None:
    client = make_redis(cluster_settings)
    keys = RedisKeys(cluster_settings.redis_key_prefix)
    try:
        scripts, victim = await _rooms_and_a_master_without_scripts(client, keys)
        calls = RedisCalls.from_settings(cluster_settings, client, scripts)
        assert not calls.pipelined  # on a cluster: batched in the cluster client's pipelines, routed by slot

        async def mark(i: int, room: str) -> Any:
            # mark_sold_out touches the room's cfg + st keys (one slot); any script would do
            return await calls.script("mark_sold_out", [keys.room_config(room), keys.room_state(room)],
                                      ["1", 1_700_000_000_000 + i])

        results = await asyncio.gather(*(mark(i, r) for i, r in enumerate(ROOMS)))
        assert len(results) == len(ROOMS)
        for room in ROOMS:
            assert await client.hget(keys.room_state(room), "sold_out") == b"1"
        assert list(await client.execute_command("SCRIPT EXISTS", scripts.sha("mark_sold_out"),
                                                 target_nodes=victim)) == [1]
    finally:
        await client.aclose()


async def test_fans_heartbeats_are_written_in_rooms_on_every_master_even_after_a_script_flush(
        cluster_client: RedisCluster, cluster_settings: Settings) -> None:
    # what makes a bucket heard (lua/admit_batch.lua) is a fan's heartbeat: one waiting visitor
    # per room polls, batched per room into status_many calls on each room's own master
    keys = RedisKeys(cluster_settings.redis_key_prefix)
    scripts, _ = await _rooms_and_a_master_without_scripts(cluster_client, keys)
    now_ms = 1_700_000_000_000
    for room in ROOMS:
        await cluster_client.hset(keys.room_config(room), mapping={"starts_at": 0, "closes_at": 0, "rate": 10,
                                                                   "paused": 0})
        await cluster_client.zadd(keys.room_waiting(room), {"1_abc": 1})
    calls = RedisCalls.from_settings(cluster_settings, cluster_client, scripts)  # as the services build it
    queue = QueueStore(calls, keys)
    statuses = await asyncio.gather(*(queue.status(room, "1_abc", now_ms) for room in ROOMS))
    assert [(s.state, s.position) for s in statuses] == [("waiting", 1)] * len(ROOMS)
    seen = [keys.room_seen(room, now_ms // BUCKET_MS) for room in ROOMS]
    assert len(_masters_of(cluster_client, seen)) == 3
    for key in seen:
        assert await cluster_client.getbit(key, 1) == 1 and await cluster_client.bitcount(key) == 1
