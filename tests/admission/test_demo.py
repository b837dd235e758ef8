"""`stagedoor up` demo: the demo room is created once, linked to the demo event."""

from __future__ import annotations

from typing import Any

from admission.demo import DEMO_ROOM, seed_demo
from stagedoor.keys import KeyRing
from stagedoor.redis_keys import RedisKeys


async def test_seed_demo_creates_the_room_once_and_links_the_event(make_settings: Any, keyring: KeyRing,
                                                                  redis_client: Any, db: Any) -> None:
    settings = make_settings()
    lines = await seed_demo(settings, keyring, {"event_id": "42", "title": "Demo Night"})
    assert any(f"/rooms/{DEMO_ROOM}" in line for line in lines)
    keys = RedisKeys(settings.redis_key_prefix)
    assert await redis_client.get(keys.event_room("42")) == DEMO_ROOM.encode()
    cfg = await redis_client.hgetall(keys.room_config(DEMO_ROOM))
    assert cfg[b"mode"] == b"fifo" and float(cfg[b"rate"]) == 5.0
    assert cfg[b"title"] == b"Demo Night"  # the queue page names the sale
    assert await db.fetchval("SELECT room_id FROM room_events WHERE event_id = '42'") == DEMO_ROOM  # recorded
    await redis_client.hset(keys.room_config(DEMO_ROOM), "rate", "7.0")  # an SRE changed it
    await seed_demo(settings, keyring, {"event_id": "42"})
    assert await redis_client.hget(keys.room_config(DEMO_ROOM), "rate") == b"7.0"  # left as it was
    assert await seed_demo(settings, keyring, {})  # no event: still a room, no link needed
