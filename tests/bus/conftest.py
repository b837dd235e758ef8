"""Fixtures of the event-bus tests: a relay and consumers over the test's Redis prefix and database."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from stagedoor.bus import OutboxRelay, StreamConsumer
from stagedoor.bus_envelope import Envelope
from stagedoor.bus_metrics import BusMetrics
from stagedoor.redis_keys import RedisKeys


@pytest.fixture
def keys(redis_prefix: str) -> RedisKeys:
    return RedisKeys(redis_prefix)


async def insert_outbox(pool: asyncpg.Pool, event_type: str = "Test", aggregate_id: str = "a1",
                        payload: dict[str, Any] | None = None, event_id: str | None = None) -> str:
    event_id = event_id or str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, payload) VALUES ($1, $2, $3, $4::jsonb)",
        uuid.UUID(event_id), event_type, aggregate_id, json.dumps(payload or {}))
    return event_id


@pytest.fixture
def make_relay(pool: asyncpg.Pool, redis_client: redis_asyncio.Redis, keys: RedisKeys) -> Callable[..., OutboxRelay]:
    def make(**kw: Any) -> OutboxRelay:
        kw.setdefault("metrics", BusMetrics())
        return OutboxRelay(pool, redis_client, keys, **kw)
    return make


class Recorder:
    """A handler that records what it handled; fails the first ``fail`` deliveries of each event."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: dict[str, int] = {}
        self.handled: list[Envelope] = []

    async def __call__(self, env: Envelope) -> None:
        n = self.calls[env.event_id] = self.calls.get(env.event_id, 0) + 1
        if n <= self.fail:
            raise RuntimeError(f"failing attempt {n}")
        self.handled.append(env)


@pytest.fixture
def make_consumer(redis_client: redis_asyncio.Redis, keys: RedisKeys) -> Callable[..., StreamConsumer]:
    def make(group: str, handler: Any, **kw: Any) -> StreamConsumer:
        kw.setdefault("block_ms", 0)
        kw.setdefault("metrics", BusMetrics())
        return StreamConsumer(redis_client, keys, group, handler, **kw)
    return make


# the ticketing tests' app fixtures (an on-sale event, a shop on a manual clock)
from tests.ticketing.conftest import make_event, manual_clock, shop  # noqa: E402, F401
