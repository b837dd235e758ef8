"""Event-bus helpers: outbox rows inserted directly, the stream read back, a recording handler,
consumers run until idle, and the worker's share of the sales dashboard run once."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import msgspec

from stagedoor.bus import OutboxRelay, StreamConsumer
from stagedoor.bus_envelope import Envelope
from stagedoor.redis_keys import RedisKeys
from stagedoor.web import DB, KEYS, REDIS
from ticketing.sales.counters import GROUP, DashboardCounters, backfill_counters


async def insert_outbox(pool: asyncpg.Pool, event_type: str = "Test", aggregate_id: str = "a1",
                        payload: dict[str, Any] | None = None, event_id: str | None = None) -> str:
    event_id = event_id or str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, payload) VALUES ($1, $2, $3, $4::jsonb)",
        uuid.UUID(event_id), event_type, aggregate_id, json.dumps(payload or {}))
    return event_id


async def wait_outbox(pool: asyncpg.Pool, event_type: str) -> None:
    """Until an outbox row of ``event_type`` exists (10 s at most)."""
    for _ in range(200):
        if await pool.fetchval("SELECT count(*) FROM outbox WHERE event_type = $1", event_type):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event_type} outbox row")


async def stream_envelopes(redis: Any, keys: RedisKeys) -> list[tuple[bytes, Envelope]]:
    """Every entry of the bus stream: (stream id, envelope)."""
    return [(sid, msgspec.json.decode(f[b"env"], type=Envelope)) for sid, f in await redis.xrange(keys.bus_stream())]


async def drain(consumer: StreamConsumer, rounds: int = 20) -> int:
    """Run the consumer until a round handles nothing (bounded); returns how many it handled."""
    total = 0
    for _ in range(rounds):
        handled = await consumer.run_once()
        total += handled
        if not handled:
            return total
    return total


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


async def count_sales(app: Any) -> int:
    """The worker's share of the sales dashboard, run once: relay the outbox to the bus stream,
    run the ``dashboard`` group's consumer until it is idle, then the one-time backfill (which
    must find nothing left to count). Returns how many deliveries the consumer counted."""
    relay = OutboxRelay(app[DB], app[REDIS], app[KEYS])
    while await relay.tick():
        pass
    consumer = StreamConsumer(app[REDIS], app[KEYS], GROUP, DashboardCounters(app[DB]), block_ms=0, batch=10_000)
    counted = 0
    while handled := await consumer.run_once():
        counted += handled
    assert await backfill_counters(app[DB]) in (0, None)
    return counted
