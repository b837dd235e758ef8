"""Fixtures of the event-bus tests: a relay and consumers over the test's Redis prefix and database
(the helpers, such as ``Recorder`` and ``insert_outbox``, are in tests/support/bus.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from stagedoor.bus import OutboxRelay, StreamConsumer
from stagedoor.bus_metrics import BusMetrics
from stagedoor.redis_keys import RedisKeys


@pytest.fixture
def keys(redis_prefix: str) -> RedisKeys:
    return RedisKeys(redis_prefix)


@pytest.fixture
def make_relay(pool: asyncpg.Pool, redis_client: redis_asyncio.Redis, keys: RedisKeys) -> Callable[..., OutboxRelay]:
    def make(**kw: Any) -> OutboxRelay:
        kw.setdefault("metrics", BusMetrics())
        return OutboxRelay(pool, redis_client, keys, **kw)
    return make


@pytest.fixture
def make_consumer(redis_client: redis_asyncio.Redis, keys: RedisKeys) -> Callable[..., StreamConsumer]:
    def make(group: str, handler: Any, **kw: Any) -> StreamConsumer:
        kw.setdefault("block_ms", 0)
        kw.setdefault("metrics", BusMetrics())
        return StreamConsumer(redis_client, keys, group, handler, **kw)
    return make
