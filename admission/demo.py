"""Demo room for `stagedoor up`: "demo-arena", fifo, queue open now, sale in ~2 minutes."""

from __future__ import annotations

import time
from typing import Any

from rooms.durable import DurableRooms, adopt
from rooms.queue_store import QueueStore
from rooms.record_store import RoomRecords
from rooms.store import Room, RoomStore
from stagedoor.connections import make_pool, make_redis
from stagedoor.keys import KeyRing
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings

DEMO_ROOM = "demo-arena"
SALE_DELAY_S = 120


async def seed_demo(settings: Settings, keyring: KeyRing, context: dict[str, Any]) -> list[str]:
    """Create the demo room once (idempotent: an existing room is left as it is), recorded in
    PostgreSQL when a database is configured."""
    redis = make_redis(settings)
    try:
        scripts = LuaScripts(redis)
        await scripts.load_all()
        store = RoomStore(RedisCalls.batched(redis, scripts), RedisKeys(settings.redis_key_prefix))
        now_ms = int(time.time() * 1000)
        event_id = context.get("event_id")
        shop = settings.url_of("ticketing") + (f"/events/{event_id}" if event_id else "/")
        room = Room(room=DEMO_ROOM, event_id=str(event_id) if event_id else None, mode="fifo",
                    opens_at_ms=now_ms, starts_at_ms=now_ms + SALE_DELAY_S * 1000, closes_at_ms=0,
                    rate_per_s=5.0, max_active=200, session_ttl_s=600, abandon_after_s=60,
                    pow_difficulty=0, shop_url=shop, paused=False, title=context.get("title"))
        if settings.database_url:  # recorded in PostgreSQL, like every room (rooms/durable.py)
            pool = await make_pool(settings, min_size=1, max_size=2)
            try:
                durable = DurableRooms(RoomRecords(pool), store, QueueStore(store.calls, store.keys))
                if await durable.records.get(DEMO_ROOM) is None and await adopt(durable, DEMO_ROOM) is None:
                    await durable.put(room)
            finally:
                await pool.close()
        elif await store.get(DEMO_ROOM) is None:
            await store.put(room, now_ms)
        context["room"] = DEMO_ROOM
    finally:
        await redis.aclose()
    url = f"{settings.url_of('waitingroom')}/rooms/{DEMO_ROOM}"
    return [f"waiting room: {url}  (sale starts {SALE_DELAY_S // 60} min after the first start, 5 admissions/s)"]
