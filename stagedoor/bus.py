"""The event bus: outbox rows -> one Redis Stream -> consumer groups (docs/event-bus.md).

- ``OutboxRelay`` publishes unpublished outbox rows in id order to ``<prefix>:{bus}:events``
  (one entry per row: fields ``type``, ``id`` and ``env``, the ``Envelope`` as JSON), then stamps
  ``published_at``. One relay works at a time (a PostgreSQL transaction-level advisory lock), so
  two replicas never interleave. A row is stamped only after its XADD: a crash in between
  republishes it (at-least-once; consumers dedupe by ``event_id``). Rows of one aggregate are
  written by transactions serialised on that aggregate's row, so they commit (and are
  published) in id order. The relay also trims the stream (``trim_stream``) and exports
  ``ticketing_outbox_lag_seconds``.
- ``StreamConsumer`` reads the stream in a consumer group (one group per consumer kind),
  retries its own failed entries with exponential backoff (XPENDING + XCLAIM), takes over
  entries a dead consumer left pending longer than ``claim_idle_ms`` (XAUTOCLAIM), moves an
  entry to ``<prefix>:{bus}:dead`` after ``max_attempts`` deliveries, and dedupes by event id
  per group (``bus_seen`` key: "run:..." while handled, "done" with a TTL afterwards).
  Dedupe is a window (``bus_dedupe_ttl_s``), not forever: handlers stay idempotent.
- ``BusEmitter`` writes best-effort events (HoldPlaced, ShopperFinished) straight to the stream
  from Redis-only hot paths, buffered and flushed in the background; they can be lost on a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from datetime import datetime
from typing import Any, TypedDict, cast

import asyncpg
import asyncpg.pool
import msgspec
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT, StreamIdT

from stagedoor.bus_envelope import Envelope, Handler
from stagedoor.bus_metrics import BusMetrics
from stagedoor.logs import log_failure
from stagedoor.redis_keys import RedisKeys
from stagedoor.tasks import stop_task
from stagedoor.web import DB, KEYS, METRICS, REDIS, SETTINGS

logger = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x5D_0B_05  # pg advisory lock: one relay publishes at a time
DEAD_MAXLEN = 100_000
TRIM_STEP = 1_000  # at most this many entries trimmed per relay tick
_encode = msgspec.json.Encoder().encode
_decode_env = msgspec.json.Decoder(Envelope).decode

StreamId = tuple[int, int]


def parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


def successor(sid: StreamId) -> StreamId:
    return sid[0], sid[1] + 1


def stream_fields(envelope: Envelope) -> dict[FieldT, EncodableT]:
    return {"type": envelope.event_type, "id": envelope.event_id, "env": _encode(envelope)}


def envelope_of_row(row: Any) -> Envelope:
    payload = row["payload"]
    if isinstance(payload, str):  # a pool without the json codec
        payload = json.loads(payload)
    created: datetime = row["created_at"]
    return Envelope(event_id=str(row["event_id"]), event_type=row["event_type"],
                    event_version=row["event_version"], aggregate_id=row["aggregate_id"], payload=payload,
                    created_at_ms=int(created.timestamp() * 1000))


# ---------------------------------------------------------------- relay

class OutboxRelay:
    """Publishes the outbox to the bus stream. ``tick()`` is one round; ``run()`` loops."""

    def __init__(self, db: asyncpg.Pool, redis: Redis, keys: RedisKeys, *, batch: int = 500,
                 interval_ms: int = 200, stream_maxlen: int = 1_000_000, metrics: BusMetrics | None = None) -> None:
        self.db = db
        self.redis = redis
        self.keys = keys
        self.batch = batch
        self.interval_ms = interval_ms
        self.stream_maxlen = stream_maxlen
        self.metrics = metrics

    async def tick(self) -> int:
        """Publish up to ``batch`` rows; returns how many were published (0: nothing or not our turn)."""
        async with self.db.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RELAY_LOCK_KEY):
                return 0
            rows = await conn.fetch(
                "SELECT id, event_id, event_type, event_version, aggregate_id, payload, created_at FROM outbox "
                "WHERE published_at IS NULL ORDER BY id LIMIT $1", self.batch)
            if rows:
                await self.publish([envelope_of_row(r) for r in rows])
                await self.stamp(conn, [r["id"] for r in rows])
            if self.metrics is not None:
                for r in rows:
                    self.metrics.outbox_relayed_total.labels(r["event_type"]).inc()
                lag = await conn.fetchval(  # rows stamped above are no longer NULL in this transaction
                    "SELECT coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 "
                    "FROM outbox WHERE published_at IS NULL")
                self.metrics.outbox_lag_seconds.set(max(0.0, lag or 0.0))
        return len(rows)

    async def publish(self, envelopes: list[Envelope]) -> None:
        stream = self.keys.bus_stream()
        async with self.redis.pipeline(transaction=False) as pipe:
            for env in envelopes:
                pipe.xadd(stream, stream_fields(env))
            await pipe.execute()

    async def stamp(self, conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, ids: list[int]) -> None:
        await conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", ids)

    async def trim(self) -> int:
        removed = await trim_stream(self.redis, self.keys.bus_stream(), self.stream_maxlen)
        if removed and self.metrics is not None:
            self.metrics.bus_trimmed_total.inc(removed)
        return removed

    async def run(self) -> None:
        errors = 0
        while True:
            try:
                published = await self.tick()
                await self.trim()
                errors = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                errors += 1
                published = 0
                if self.metrics is not None:
                    self.metrics.outbox_relay_errors_total.inc()
                log_failure(logger, "outbox_relay_failed", exc)
            if published >= self.batch:
                continue  # a backlog: go on at once
            delay = self.interval_ms / 1000 * (min(2 ** errors, 50) if errors else 1)
            await asyncio.sleep(delay)


async def trim_stream(redis: Redis, stream: str, maxlen: int, step: int = TRIM_STEP) -> int:
    """Trim the oldest entries beyond ``maxlen``, but never one a consumer group still needs:
    nothing at or after a group's oldest pending entry, nothing it has not read yet."""
    length = await redis.xlen(stream)
    excess = length - maxlen
    if excess <= 0:
        return 0
    oldest = cast(list[_Entry], await redis.xrange(stream, "-", "+", count=min(excess, step)))
    if not oldest:
        return 0
    cut = successor(parse_id(oldest[-1][0]))
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        groups = []
    for group in groups:
        need = successor(parse_id(group["last-delivered-id"]))
        if group["pending"]:
            summary = await redis.xpending(stream, group["name"])
            if summary["min"] is not None:
                need = min(need, parse_id(summary["min"]))
        cut = min(cut, need)
    if cut <= parse_id(oldest[0][0]):
        return 0
    return int(await redis.xtrim(stream, minid=format_id(cut), approximate=False))


# ---------------------------------------------------------------- consumer

# Stream replies as our clients read them (bytes: decode_responses is off). redis-py types them
# for either setting, and xclaim's for its justid form too.
_Entry = tuple[bytes, dict[bytes, bytes] | None]  # an id, and its fields (None: deleted meanwhile)


class _Pending(TypedDict):
    """One entry of XPENDING's extended form, as redis-py parses it."""

    message_id: bytes
    consumer: bytes
    time_since_delivered: int
    times_delivered: int


class _Delivery(msgspec.Struct):
    stream_id: bytes
    fields: dict[bytes, bytes]
    attempts: int  # deliveries so far, this one included


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StreamConsumer:
    """One consumer of a consumer group. Handlers are called one delivery at a time, in order."""

    def __init__(self, redis: Redis, keys: RedisKeys, group: str, handler: Handler, *,
                 consumer_name: str | None = None, max_attempts: int = 5, batch: int = 100, block_ms: int = 1000,
                 claim_idle_ms: int = 30_000, metrics: BusMetrics | None = None, retry_ms: int = 1000,
                 dedupe_ttl_s: int = 3600, event_types: Collection[str] | None = None,
                 start_id: str = "0") -> None:
        self.redis = redis
        self.keys = keys
        self.stream = keys.bus_stream()
        self.group = group
        self.handler = handler
        self.name = consumer_name or default_consumer_name()
        self.max_attempts = max_attempts
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.retry_ms = min(retry_ms, claim_idle_ms)
        self.dedupe_ttl_s = dedupe_ttl_s
        self.metrics = metrics
        # The event types this group handles (others are acknowledged unread); by default the
        # handler's own ``event_types`` attribute, else everything.
        types = event_types if event_types is not None else getattr(handler, "event_types", None)
        self.event_types = frozenset(types) if types is not None else None
        self.start_id = start_id
        self._group_ready = False
        self._claim_cursor = "0-0"

    # -- setup
    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    # -- fetching
    def _backoff_ms(self, delivered: int) -> int:
        backoff: int = self.retry_ms * 2 ** max(0, delivered - 1)
        return min(self.claim_idle_ms, backoff)

    async def _retry_own(self) -> list[_Delivery]:
        """Our own pending entries whose backoff has passed (failed handlers, or our previous life)."""
        pending = cast(list[_Pending], await self.redis.xpending_range(
            self.stream, self.group, min="-", max="+", count=self.batch, consumername=self.name, idle=self.retry_ms))
        due = {p["message_id"]: p["times_delivered"] for p in pending
               if p["time_since_delivered"] >= self._backoff_ms(p["times_delivered"])}
        if not due:
            return []
        ids: list[StreamIdT] = list(due)
        claimed = cast(list[_Entry], await self.redis.xclaim(self.stream, self.group, self.name,
                                                             min_idle_time=self.retry_ms, message_ids=ids))
        out = []
        for sid, fields in claimed:
            if fields is None:
                continue
            out.append(_Delivery(stream_id=sid, fields=fields, attempts=due.get(sid, 0) + 1))
        missing = set(due) - {sid for sid, _ in claimed}
        if missing:  # trimmed while pending (should not happen: trimming spares pending entries)
            await self.redis.xack(self.stream, self.group, *missing)
        return out

    async def _claim_abandoned(self) -> list[_Delivery]:
        """Entries other consumers left pending longer than ``claim_idle_ms`` (dead or stuck)."""
        result = await self.redis.xautoclaim(self.stream, self.group, self.name, min_idle_time=self.claim_idle_ms,
                                             start_id=self._claim_cursor, count=self.batch)
        cursor, claimed = result[0], result[1]
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        if not claimed:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid, _ in claimed:
                pipe.xpending_range(self.stream, self.group, min=sid, max=sid, count=1)
            infos = await pipe.execute()
        out = []
        for (sid, fields), info in zip(claimed, infos, strict=True):
            attempts = info[0]["times_delivered"] if info else 1
            out.append(_Delivery(stream_id=sid, fields=fields, attempts=attempts))
        if self.metrics is not None:
            self.metrics.bus_claimed_total.labels(self.group).inc(len(out))
        logger.info("bus_claimed", extra={"group": self.group, "consumer": self.name, "entries": len(out)})
        return out

    async def _read_new(self, block: bool) -> list[_Delivery]:
        resp = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None, await self.redis.xreadgroup(
            self.group, self.name, {self.stream: ">"}, count=self.batch,
            block=self.block_ms if block and self.block_ms > 0 else None))
        out = []
        for _stream, entries in resp or []:
            for sid, fields in entries:
                out.append(_Delivery(stream_id=sid, fields=fields, attempts=1))
        return out

    # -- one round
    async def run_once(self) -> int:
        """Retry due failures, take over abandoned entries, read new ones, handle them in order.
        Returns the number of deliveries handled successfully."""
        if not self._group_ready:
            await self.ensure_group()
        try:
            deliveries = await self._retry_own()
            deliveries += await self._claim_abandoned()
            deliveries += await self._read_new(block=not deliveries)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted (Redis flushed): recreate the group
                self._group_ready = False
                return 0
            raise
        handled = 0
        touched = time.monotonic()
        for i, delivery in enumerate(deliveries):
            if (time.monotonic() - touched) * 1000 > self.claim_idle_ms / 3:
                await self._touch([d.stream_id for d in deliveries[i:]])
                touched = time.monotonic()
            if await self._handle(delivery):
                handled += 1
        return handled

    async def _touch(self, ids: list[bytes]) -> None:
        """Reset the idle time of the entries we still own, so nobody takes a long batch's tail."""
        pending = await self.redis.xpending_range(self.stream, self.group, min="-", max="+", count=self.batch * 2,
                                                  consumername=self.name)
        ours = {p["message_id"] for p in pending}
        mine: list[StreamIdT] = [sid for sid in ids if sid in ours]
        if mine:
            await self.redis.xclaim(self.stream, self.group, self.name, min_idle_time=0, message_ids=mine,
                                    justid=True)

    async def _handle(self, d: _Delivery) -> bool:
        sid = d.stream_id
        try:
            env = _decode_env(d.fields[b"env"])
        except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._dead_letter(d, "undecodable", f"{type(exc).__name__}: {exc}"[:300], None)
            return False
        if self.event_types is not None and env.event_type not in self.event_types:
            await self.redis.xack(self.stream, self.group, sid)
            return False
        if d.attempts > self.max_attempts:  # delivered too often without an answer (consumers crashing)
            await self._dead_letter(d, env.event_type, "too many deliveries", env.event_id)
            return False
        seen = self.keys.bus_seen(self.group, env.event_id)
        marker = f"run:{self.name}:{sid.decode()}".encode()
        if not await self.redis.set(seen, marker, nx=True, px=self.claim_idle_ms * 2):
            current = cast(bytes | None, await self.redis.get(seen))  # bytes: decode_responses is off
            if current == b"done":
                await self.redis.xack(self.stream, self.group, sid)
                if self.metrics is not None:
                    self.metrics.bus_duplicates_total.labels(self.group).inc()
                return False
            if current is not None and not current.endswith(b":" + sid):
                # Another entry with this event id (a republished row) is being handled now:
                # that entry completes, retries or dead-letters on its own; this one is redundant.
                await self.redis.xack(self.stream, self.group, sid)
                if self.metrics is not None:
                    self.metrics.bus_duplicates_total.labels(self.group).inc()
                return False
            if current is not None and current != marker:
                return False  # this very entry is being handled by a slow consumer: leave it pending
            if current is None and not await self.redis.set(seen, marker, nx=True, px=self.claim_idle_ms * 2):
                return False
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.claim_idle_ms / 1000):
                await self.handler(env)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.metrics is not None:
                self.metrics.bus_failed_total.labels(self.group, env.event_type).inc()
            logger.warning("bus_handler_failed", extra={
                "group": self.group, "event_type": env.event_type, "event_id": env.event_id,
                "attempt": d.attempts, "error": type(exc).__name__}, exc_info=True)
            if await self.redis.get(seen) == marker:
                await self.redis.delete(seen)
            if d.attempts >= self.max_attempts:
                await self._dead_letter(d, env.event_type, f"{type(exc).__name__}: {exc}"[:300], env.event_id)
            return False
        finally:
            if self.metrics is not None:
                self.metrics.bus_handler_duration_seconds.labels(self.group, env.event_type).observe(
                    time.perf_counter() - started)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(seen, b"done", ex=self.dedupe_ttl_s)
            pipe.xack(self.stream, self.group, sid)
            await pipe.execute()
        if self.metrics is not None:
            self.metrics.bus_handled_total.labels(self.group, env.event_type).inc()
        return True

    async def _dead_letter(self, d: _Delivery, event_type: str, error: str, event_id: str | None) -> None:
        fields: dict[Any, Any] = dict(d.fields)
        fields.update({b"group": self.group, b"stream_id": d.stream_id, b"attempts": str(d.attempts),
                       b"error": error, b"consumer": self.name})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.bus_dead(), fields, maxlen=DEAD_MAXLEN, approximate=True)
            pipe.xack(self.stream, self.group, d.stream_id)
            await pipe.execute()
        if self.metrics is not None:
            self.metrics.bus_dead_lettered_total.labels(self.group, event_type).inc()
        logger.error("bus_dead_lettered", extra={"group": self.group, "event_type": event_type,
                                                 "event_id": event_id, "attempts": d.attempts})

    async def run(self) -> None:
        """Consume forever (cancel to stop). Errors (Redis unreachable) back off and retry."""
        errors = 0
        while True:
            try:
                await self.run_once()
                errors = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                errors += 1
                log_failure(logger, "bus_consumer_failed", exc, group=self.group, consumer=self.name)
                await asyncio.sleep(min(0.1 * 2 ** errors, 10.0))


# ---------------------------------------------------------------- best-effort emitter

class BusEmitter:
    """Best-effort events from Redis-only hot paths (no PostgreSQL write): ``emit()`` appends to
    a bounded in-memory buffer, a background task XADDs the buffer in one pipeline every
    ``flush_ms``. Lost on a crash or when Redis is unreachable (counted in
    ``stagedoor_bus_emit_dropped_total``); consumers must not depend on them for correctness."""

    def __init__(self, redis: Redis, keys: RedisKeys, *, flush_ms: int = 100, max_buffer: int = 100_000,
                 metrics: BusMetrics | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.flush_ms = flush_ms
        self.max_buffer = max_buffer
        self.metrics = metrics
        self._buffer: list[Envelope] = []

    def emit(self, event_type: str, aggregate_id: str, payload: dict[str, Any], *, version: int = 1,
             event_id: str | None = None) -> None:
        env = Envelope(event_id=event_id or str(uuid.uuid4()), event_type=event_type, event_version=version,
                       aggregate_id=aggregate_id, payload=payload, created_at_ms=int(time.time() * 1000))
        if len(self._buffer) >= self.max_buffer:
            if self.metrics is not None:
                self.metrics.bus_emit_dropped_total.labels(event_type).inc()
            return
        self._buffer.append(env)

    async def flush(self) -> int:
        batch, self._buffer = self._buffer, []
        if not batch:
            return 0
        stream = self.keys.bus_stream()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for env in batch:
                    pipe.xadd(stream, stream_fields(env))
                await pipe.execute()
        except Exception:
            logger.warning("bus_emit_failed", extra={"events": len(batch)}, exc_info=True)
            if self.metrics is not None:
                for env in batch:
                    self.metrics.bus_emit_dropped_total.labels(env.event_type).inc()
            return 0
        if self.metrics is not None:
            for env in batch:
                self.metrics.bus_emitted_total.labels(env.event_type).inc()
        return len(batch)

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_ms / 1000)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())


# ---------------------------------------------------------------- aiohttp wiring

CONSUMERS = web.AppKey("bus_consumers", dict)  # group -> StreamConsumer
RELAY = web.AppKey("bus_relay", OutboxRelay)
EMITTER = web.AppKey("bus_emitter", BusEmitter)


def _bus_metrics(app: web.Application) -> BusMetrics:
    return BusMetrics.of(app[METRICS])


async def _stop(task: asyncio.Task[Any]) -> None:
    await stop_task(task)


def consumer_ctx(group: str, handler_factory: Callable[[web.Application], Handler], *,
                 event_types: Iterable[str] | None = None) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running one consumer of ``group`` for the app's lifetime. The handler is
    built by ``handler_factory(app)`` at start-up (after the app's other contexts)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        consumer = StreamConsumer(
            app[REDIS], app[KEYS], group, handler_factory(app), max_attempts=settings.bus_max_attempts,
            claim_idle_ms=settings.bus_claim_idle_ms, retry_ms=settings.bus_retry_ms,
            dedupe_ttl_s=settings.bus_dedupe_ttl_s, metrics=_bus_metrics(app),
            event_types=list(event_types) if event_types is not None else None)
        await consumer.ensure_group()
        if CONSUMERS not in app:
            app[CONSUMERS] = {}
        app[CONSUMERS][group] = consumer
        task = asyncio.create_task(consumer.run(), name=f"bus-consumer-{group}")
        yield
        await _stop(task)

    return ctx


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """The outbox relay for the app's lifetime (the worker)."""
    settings = app[SETTINGS]
    relay = OutboxRelay(app[DB], app[REDIS], app[KEYS], batch=settings.outbox_relay_batch,
                        interval_ms=settings.outbox_relay_interval_ms, stream_maxlen=settings.bus_stream_maxlen,
                        metrics=_bus_metrics(app))
    app[RELAY] = relay
    task = asyncio.create_task(relay.run(), name="outbox-relay")
    yield
    await _stop(task)


async def emitter_ctx(app: web.Application) -> AsyncIterator[None]:
    """The best-effort emitter (services whose Redis-only paths announce events)."""
    settings = app[SETTINGS]
    emitter = BusEmitter(app[REDIS], app[KEYS], flush_ms=settings.bus_emit_flush_ms, metrics=_bus_metrics(app))
    app[EMITTER] = emitter
    task = asyncio.create_task(emitter.run(), name="bus-emitter")
    yield
    await _stop(task)
