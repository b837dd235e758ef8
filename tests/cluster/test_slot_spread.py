"""Rooms and events spread over the cluster's masters: every key of one room (or one event)
shares a hash slot, and different rooms / events land on different masters."""

from __future__ import annotations

import time
from collections import Counter

from redis.asyncio.cluster import RedisCluster

from rooms.store import Room, RoomStore
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings

ROOMS = [f"concert-{i}" for i in range(30)]
EVENTS = [str(i) for i in range(1, 31)]


def _room(room: str, now_ms: int) -> Room:
    return Room(room=room, event_id=None, mode="fifo", opens_at_ms=now_ms, starts_at_ms=now_ms, closes_at_ms=0,
                rate_per_s=10.0, max_active=100, session_ttl_s=600, abandon_after_s=60, pow_difficulty=0,
                shop_url=None, paused=False)


async def test_rooms_and_events_land_on_every_master_each_in_one_slot(cluster_settings: Settings,
                                                                       cluster_client: RedisCluster) -> None:
    keys = RedisKeys(cluster_settings.redis_key_prefix)
    scripts = LuaScripts(cluster_client)
    await scripts.load_all()
    store = RoomStore(RedisCalls.from_settings(cluster_settings, cluster_client, scripts), keys)
    now_ms = int(time.time() * 1000)
    for room in ROOMS:
        await store.put(_room(room, now_ms), now_ms)
    room_masters: Counter[str] = Counter()
    for room in ROOMS:
        family = [keys.room_config(room), keys.room_state(room), keys.room_waiting(room), keys.room_active(room),
                  keys.room_evicted(room), keys.room_seen(room, 1)]
        assert len({cluster_client.keyslot(k) for k in family}) == 1, room
        node = cluster_client.get_node_from_key(family[0])
        assert await cluster_client.execute_command("EXISTS", family[0], target_nodes=node) == 1
        room_masters[node.name] += 1
    event_masters: Counter[str] = Counter()
    for ev in EVENTS:
        family = [keys.inventory_meta(ev), keys.inventory_seats(ev), keys.hold_expiry(ev), keys.hold_records(ev),
                  keys.event_room(ev)]
        assert len({cluster_client.keyslot(k) for k in family}) == 1, ev
        event_masters[cluster_client.get_node_from_key(family[0]).name] += 1
    masters = {n.name for n in cluster_client.get_primaries()}
    print(f"rooms per master: {dict(room_masters)}; events per master: {dict(event_masters)}")
    assert set(room_masters) == masters and set(event_masters) == masters
