"""Fixtures for the waiting room and admission tests: stores on the shared test Redis under
this test's key prefix, and a room factory with an explicit clock (times in ms)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from rooms.queue_store import QueueStore
from rooms.store import Room, RoomStore
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings

T0 = 1_800_000_000_000  # a fixed "now" in ms; tests move time explicitly
BURST_S = 0.5


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


@pytest.fixture
async def stores(redis_client: redis_asyncio.Redis, redis_prefix: str) -> Stores:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    return Stores(redis_client, scripts, RedisKeys(redis_prefix))


def room_config(room: str = "r1", **overrides: Any) -> Room:
    values: dict[str, Any] = dict(
        room=room, event_id=None, mode="fifo", opens_at_ms=T0 - 3_600_000, starts_at_ms=T0, closes_at_ms=0,
        rate_per_s=10.0, max_active=1000, session_ttl_s=600, abandon_after_s=0, pow_difficulty=0,
        shop_url="https://shop.example/e/1", paused=False)
    values.update(overrides)
    return Room(**values)


@pytest.fixture
def make_room(stores: Stores) -> Callable[..., Awaitable[Room]]:
    # Created at T0 by default: the token bucket starts empty then, so joins at T0 all queue.
    async def make(room: str = "r1", now_ms: int = T0, **overrides: Any) -> Room:
        cfg = room_config(room, **overrides)
        await stores.rooms.put(cfg, now_ms)
        return cfg

    return make


@pytest.fixture
def wr_settings(make_settings: Any) -> Settings:
    return make_settings(rate_limits_enabled=False, admission_tick_ms=50)


@pytest.fixture
async def clients(service_client: Any, wr_settings: Settings) -> tuple[Any, Any]:
    """(waiting room client, admission client) on the same settings, controller running; the
    waiting room served through HotSite (tests/conftest.py), as in production."""
    return await service_client("waitingroom", wr_settings), await service_client("admission", wr_settings)
