"""Waiting-room helpers: the room and queue stores on a fixed clock (``T0``, times in ms),
room configs, and rooms put through the admission service's admin API."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as redis_asyncio

from rooms.queue_store import QueueStore
from rooms.store import Room, RoomStore
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys

T0 = 1_800_000_000_000  # a fixed "now" in ms; tests move time explicitly
BURST_S = 0.5
PROBLEM = "application/problem+json"


class Stores:
    def __init__(self, redis: redis_asyncio.Redis, scripts: LuaScripts, keys: RedisKeys) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.calls = RedisCalls.batched(redis, scripts)
        self.rooms = RoomStore(self.calls, keys)
        self.queue = QueueStore(self.calls, keys)

    async def join(self, room: str, now_ms: int, visitor_id: str | None = None, **kw: Any) -> Any:
        return await self.queue.join(room, visitor_id, now_ms, burst_s=BURST_S, **kw)

    async def tick(self, room: str, now_ms: int, max_batch: int = 1000) -> Any:
        return await self.queue.admit_tick(room, now_ms, max_batch=max_batch, burst_s=BURST_S)

    async def waiting_ids(self, room: str) -> list[str]:
        return [m.decode() for m in await self.redis.zrange(self.keys.room_waiting(room), 0, -1)]

    async def active_ids(self, room: str) -> list[str]:
        return [m.decode() for m in await self.redis.zrange(self.keys.room_active(room), 0, -1)]


def room_config(room: str = "r1", **overrides: Any) -> Room:
    values: dict[str, Any] = dict(
        room=room, event_id=None, mode="fifo", opens_at_ms=T0 - 3_600_000, starts_at_ms=T0, closes_at_ms=0,
        rate_per_s=10.0, max_active=1000, session_ttl_s=600, abandon_after_s=0, pow_difficulty=0,
        shop_url="https://shop.example/e/1", paused=False)
    values.update(overrides)
    return Room(**values)


def iso(offset_s: float) -> str:
    """Now plus ``offset_s``, as the admin API's ISO 8601 UTC time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


async def put_room(adm: Any, admin_headers: dict[str, str], room: str = "r1", **body: Any) -> dict[str, Any]:
    """PUT /admin/rooms/{room} on the admission client: open since a minute, started 30 s ago,
    5 admissions a second, unless ``body`` says otherwise."""
    payload = {"opens_at": iso(-60), "starts_at": iso(-30), "rate_per_s": 5, "max_active": 100,
               "shop_url": "https://shop.example/e/7", "event_id": "7"}
    payload.update(body)
    resp = await adm.put(f"/admin/rooms/{room}", json=payload, headers=admin_headers)
    assert resp.status in (200, 201), await resp.text()
    return await resp.json()
