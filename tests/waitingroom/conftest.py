"""Fixtures of the waiting room and admission tests: stores on the shared test Redis under this
test's key prefix, a room factory with an explicit clock (times in ms, from tests/support/rooms.py
``T0``), and the two services' clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from rooms.store import Room
from stagedoor.lua import LuaScripts
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from tests.support.rooms import T0, Stores, room_config


@pytest.fixture
async def stores(redis_client: redis_asyncio.Redis, redis_prefix: str) -> Stores:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    return Stores(redis_client, scripts, RedisKeys(redis_prefix))


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
    waiting room served through HotSite (tests/support/services.py), as in production."""
    return await service_client("waitingroom", wr_settings), await service_client("admission", wr_settings)
