"""Organizer dashboard counters: the bus group ``dashboard`` keeps per-event, per-bucket counter
rows (migration 0008 ``sales_counters``) that ``GET /api/events/{id}/sales`` reads instead of
scanning the event's orders and tickets on every poll.

What is counted, in the bucket of the event's commit time (``Envelope.created_at_ms``, the
outbox row's ``created_at``: for an order the same ``now()`` as ``orders.created_at``):

- OrderConfirmed: orders +1, tickets + len(ticket_ids), revenue + total (minor units);
- OrderRefunded: refunds +1, refunded_amount + amount, refunded_tickets + the order's tickets
  (the payload does not carry them: the statement counts ``tickets`` by ``order_id``, indexed
  and immutable once written) -- in the minute of the refund, not of the sale;
- PaymentFailed: payment_failures +1; BookingExpired: holds_expired +1; TicketCheckedIn:
  checkins +1.

Every event updates four rows: its 'minute', 'hour' and 'day' buckets (UTC) and the event's
'total' row, so the endpoint reads one row plus at most ``buckets`` rows (primary-key range).
Net figures (sold, orders, revenue of the sales endpoint) are gross minus refunded.

Exactly-once: one statement inserts ``bus_applied`` ('dashboard', event id) and upserts the
counters only if that insert took (``ON CONFLICT DO NOTHING RETURNING``), so a redelivery, a
republished outbox row or two consumers racing on one entry count it once: the second
insert waits for the first transaction on the primary key, then finds the row and does nothing.

Backfill (:func:`backfill_counters`): counters must also be right for what happened before the
group existed. The outbox is the complete log of counted facts (rows are never deleted), so the
backfill counts outbox rows, with the very SQL the consumer uses, once per database (the
``sales_counters_backfill`` row, written in the same transaction; an advisory lock makes
concurrent worker starts wait and then find it done). The race -- a fact committed before the
backfill but relayed, or consumed, after it -- is closed by doing the marking and the counting
in ONE statement: it inserts ``bus_applied`` for every counted outbox row visible in its
snapshot and counts exactly the rows whose insert took. So each fact is counted by whoever
inserts its ``bus_applied`` row first:

- committed (with its outbox row: same transaction) before the backfill's snapshot and not yet
  applied: marked and counted by the backfill; its later delivery finds the row and is skipped;
- already applied by the consumer: the insert conflicts, the backfill does not count it;
- being applied by the consumer during the backfill: the unique key serialises the two inserts
  and only the one that took counts;
- committed after the snapshot: not marked, counted by the consumer when delivered.

Two statements (count, then mark) would be wrong under READ COMMITTED: each statement has its
own snapshot, and a fact committed in between would be marked without being counted. The
consumer may run before, during or after the backfill; the result is the same. Caveat shared
with the read model: ``bus_applied`` rows are purged after ``APPLIED_RETENTION_S`` (7 days), so
a manual replay of an event older than that would be counted again.

Freshness (:func:`counters_freshness`): "every fact committed before ``as_of`` is counted".
``as_of`` is the commit time of the oldest fact not yet counted -- the oldest unpublished outbox
row (PostgreSQL, read first), else the oldest entry the group has not acknowledged (pending or
not yet delivered; Redis, read second, so a row published in between is still seen) -- or the
moment of the check when nothing is waiting. None when the group does not exist or the backfill
has not run: the counters are then not maintained.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any, cast

import asyncpg
import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from stagedoor.bus_envelope import Envelope
from stagedoor.redis_keys import RedisKeys

logger = logging.getLogger(__name__)

GROUP = "dashboard"
COUNTED_TYPES = ("OrderConfirmed", "OrderRefunded", "PaymentFailed", "BookingExpired", "TicketCheckedIn")
GRAINS = ("minute", "hour", "day")
BACKFILL_LOCK_KEY = 0x5D_0D_A5  # pg advisory lock: one backfill at a time
BACKFILL_TIMEOUT_S = 3600.0
BACKFILL_RETRY_MAX_S = 60.0
COUNTERS = ("orders", "tickets", "revenue", "refunds", "refunded_tickets", "refunded_amount", "payment_failures",
            "holds_expired", "checkins")

# The counting shared by the consumer and the backfill: ``facts`` (defined before this tail)
# yields (event_id bigint, at timestamptz, kind text, payload jsonb), one row per fact to count.
_COUNT = """
deltas AS (
    SELECT f.event_id, f.at,
           (f.kind = 'OrderConfirmed')::int AS orders,
           CASE WHEN f.kind = 'OrderConfirmed' AND jsonb_typeof(f.payload -> 'ticket_ids') = 'array'
                THEN jsonb_array_length(f.payload -> 'ticket_ids') ELSE 0 END AS tickets,
           CASE WHEN f.kind = 'OrderConfirmed' AND jsonb_typeof(f.payload -> 'total') = 'number'
                THEN (f.payload ->> 'total')::bigint ELSE 0 END AS revenue,
           (f.kind = 'OrderRefunded')::int AS refunds,
           CASE WHEN f.kind = 'OrderRefunded'
                THEN (SELECT count(*) FROM tickets t WHERE t.order_id = (f.payload ->> 'order_id')::uuid)
                ELSE 0 END AS refunded_tickets,
           CASE WHEN f.kind = 'OrderRefunded' AND jsonb_typeof(f.payload -> 'amount') = 'number'
                THEN (f.payload ->> 'amount')::bigint ELSE 0 END AS refunded_amount,
           (f.kind = 'PaymentFailed')::int AS payment_failures,
           (f.kind = 'BookingExpired')::int AS holds_expired,
           (f.kind = 'TicketCheckedIn')::int AS checkins
    FROM facts f
), bucketed AS (
    SELECT d.event_id, g.grain,
           CASE WHEN g.grain = 'total' THEN 'epoch'::timestamptz ELSE date_trunc(g.grain, d.at, 'UTC') END AS bucket,
           sum(d.orders) AS orders, sum(d.tickets) AS tickets, sum(d.revenue) AS revenue, sum(d.refunds) AS refunds,
           sum(d.refunded_tickets) AS refunded_tickets, sum(d.refunded_amount) AS refunded_amount,
           sum(d.payment_failures) AS payment_failures, sum(d.holds_expired) AS holds_expired,
           sum(d.checkins) AS checkins, max(d.at) AS last_event_at
    FROM deltas d CROSS JOIN (VALUES ('minute'), ('hour'), ('day'), ('total')) AS g (grain)
    GROUP BY 1, 2, 3
), upserted AS (
    INSERT INTO sales_counters AS c (event_id, grain, bucket, orders, tickets, revenue, refunds, refunded_tickets,
                                     refunded_amount, payment_failures, holds_expired, checkins, last_event_at)
    SELECT event_id, grain, bucket, orders, tickets, revenue, refunds, refunded_tickets, refunded_amount,
           payment_failures, holds_expired, checkins, last_event_at
    FROM bucketed
    ORDER BY event_id, grain, bucket  -- rows locked in one order: concurrent deliveries cannot deadlock
    ON CONFLICT (event_id, grain, bucket) DO UPDATE SET
        orders = c.orders + EXCLUDED.orders, tickets = c.tickets + EXCLUDED.tickets,
        revenue = c.revenue + EXCLUDED.revenue, refunds = c.refunds + EXCLUDED.refunds,
        refunded_tickets = c.refunded_tickets + EXCLUDED.refunded_tickets,
        refunded_amount = c.refunded_amount + EXCLUDED.refunded_amount,
        payment_failures = c.payment_failures + EXCLUDED.payment_failures,
        holds_expired = c.holds_expired + EXCLUDED.holds_expired, checkins = c.checkins + EXCLUDED.checkins,
        last_event_at = greatest(c.last_event_at, EXCLUDED.last_event_at)
    RETURNING 1
)
SELECT (SELECT count(*) FROM facts)::bigint AS counted
"""

# One delivery: applied and counted, or (a repeat) neither. $1 group, $2 bus event id,
# $3 event id, $4 commit time, $5 event type, $6 payload.
COUNT_DELIVERY = """
WITH applied AS (
    INSERT INTO bus_applied (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING event_id
), facts AS (
    SELECT $3::bigint AS event_id, $4::timestamptz AS at, $5::text AS kind, $6::text::jsonb AS payload FROM applied
),""" + _COUNT

# Every counted outbox row not applied yet, marked and counted in one snapshot (module docstring).
BACKFILL = """
WITH applied AS (
    INSERT INTO bus_applied (consumer_group, event_id)
    SELECT $1, o.event_id FROM outbox o
    WHERE o.event_type = ANY($2::text[]) AND o.payload ->> 'event_id' ~ '^[0-9]{1,18}$'
    ON CONFLICT DO NOTHING
    RETURNING event_id
), facts AS (
    SELECT (o.payload ->> 'event_id')::bigint AS event_id, o.created_at AS at, o.event_type AS kind, o.payload
    FROM outbox o JOIN applied a ON a.event_id = o.event_id
),""" + _COUNT

BACKFILLED = "SELECT counted FROM sales_counters_backfill"
MARK_BACKFILLED = "INSERT INTO sales_counters_backfill (counted) VALUES ($1)"

# The sales endpoint's reads: the 'total' row (LEFT JOIN: an event with nothing counted yet),
# whether the backfill ran, and the oldest unpublished outbox row (the outbox_unpublished index).
TOTALS = """
SELECT coalesce(c.orders, 0) AS orders, coalesce(c.tickets, 0) AS tickets, coalesce(c.revenue, 0) AS revenue,
       coalesce(c.refunds, 0) AS refunds, coalesce(c.refunded_tickets, 0) AS refunded_tickets,
       coalesce(c.refunded_amount, 0) AS refunded_amount, coalesce(c.payment_failures, 0) AS payment_failures,
       coalesce(c.holds_expired, 0) AS holds_expired, coalesce(c.checkins, 0) AS checkins,
       c.last_event_at,
       EXISTS (SELECT 1 FROM sales_counters_backfill) AS backfilled,
       (SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1) AS unpublished_since
FROM (SELECT 1) AS one
LEFT JOIN sales_counters c ON c.event_id = $1 AND c.grain = 'total' AND c.bucket = 'epoch'::timestamptz
"""

SERIES = """
SELECT bucket, orders, tickets, revenue, refunds, refunded_tickets, refunded_amount, payment_failures,
       holds_expired, checkins
FROM sales_counters WHERE event_id = $1 AND grain = $2
ORDER BY bucket DESC LIMIT $3
"""

_json = msgspec.json.Encoder()
_decode_env = msgspec.json.Decoder(Envelope).decode


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    orders: int = 0
    tickets: int = 0
    revenue: int = 0
    refunds: int = 0
    refunded_tickets: int = 0
    refunded_amount: int = 0
    payment_failures: int = 0
    holds_expired: int = 0
    checkins: int = 0


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    at: dt.datetime
    counts: Counts


class EventCounters(msgspec.Struct, frozen=True, kw_only=True):
    totals: Counts
    series: list[Bucket]  # oldest first
    last_event_at: dt.datetime | None  # the newest fact counted for this event
    backfilled: bool
    unpublished_since: dt.datetime | None  # the oldest outbox row the relay has not published


def _counts(row: Any) -> Counts:
    return Counts(**{name: int(row[name]) for name in COUNTERS})


# ---------------------------------------------------------------- the consumer

def event_id_of(env: Envelope) -> int | None:
    raw = str(env.payload.get("event_id", ""))
    return int(raw) if raw.isdigit() and len(raw) <= 18 else None


class DashboardCounters:
    """Handler of the ``dashboard`` group: one statement per delivery (exactly-once, see above)."""

    event_types = frozenset(COUNTED_TYPES)

    def __init__(self, pool: asyncpg.Pool, group: str = GROUP) -> None:
        self.pool = pool
        self.group = group

    async def __call__(self, env: Envelope) -> None:
        await self.count(env)

    async def count(self, env: Envelope) -> bool:
        """Count one delivery; False when it was counted before (or is not countable)."""
        event_id = event_id_of(env)
        if event_id is None or env.event_type not in COUNTED_TYPES:
            return False
        at = dt.datetime.fromtimestamp(env.created_at_ms / 1000, dt.UTC)
        counted = await self.pool.fetchval(COUNT_DELIVERY, self.group, uuid.UUID(env.event_id), event_id, at,
                                           env.event_type, _json.encode(env.payload).decode())
        return bool(counted)


async def backfill_counters(pool: asyncpg.Pool, group: str = GROUP) -> int | None:
    """Count the outbox rows no delivery has counted yet, once per database (module docstring).
    Returns how many facts it counted, None when the backfill had already run."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", BACKFILL_LOCK_KEY, timeout=BACKFILL_TIMEOUT_S)
        if await conn.fetchval(BACKFILLED) is not None:
            return None
        counted = int(await conn.fetchval(BACKFILL, group, list(COUNTED_TYPES), timeout=BACKFILL_TIMEOUT_S))
        await conn.execute(MARK_BACKFILLED, counted)
    logger.info("dashboard_counters_backfilled", extra={"counted": counted})
    return counted


async def backfill_until_done(pool: asyncpg.Pool, group: str = GROUP) -> None:
    """The worker's background backfill: retried with backoff (capped) until it has run once.
    It need not finish before the consumer starts (module docstring), so it does not hold up
    the worker's start on a large outbox."""
    attempt = 0
    while True:
        try:
            await backfill_counters(pool, group)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            attempt += 1
            logger.exception("dashboard_counters_backfill_failed", extra={"attempt": attempt})
            await asyncio.sleep(min(BACKFILL_RETRY_MAX_S, 0.5 * 2 ** attempt))


# ---------------------------------------------------------------- reads (the sales endpoint)

class SalesCounterStore:
    """The counters of one event: the totals row and at most ``buckets`` rows of one grain."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def event_counters(self, event_id: int, grain: str, buckets: int) -> EventCounters:
        if grain not in GRAINS:
            raise ValueError(f"unknown grain {grain!r}")
        async with self.pool.acquire() as conn:
            totals = await conn.fetchrow(TOTALS, event_id)
            rows = await conn.fetch(SERIES, event_id, grain, buckets)
        assert totals is not None
        return EventCounters(
            totals=_counts(totals), series=[Bucket(at=r["bucket"], counts=_counts(r)) for r in reversed(rows)],
            last_event_at=totals["last_event_at"], backfilled=totals["backfilled"],
            unpublished_since=totals["unpublished_since"])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _created_at_ms(redis: Redis, stream: str, start: str, count: int = 1) -> list[int]:
    # bytes: our clients do not decode replies (redis-py types them for either way)
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream, min=start, max="+", count=count))
    out = []
    for _sid, fields in entries:
        try:
            out.append(_decode_env(fields[b"env"]).created_at_ms)
        except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
            continue  # undecodable: the consumer dead-letters it
    return out


class GroupBacklog:
    """How far one consumer group is behind on the bus stream (Redis side of the freshness)."""

    def __init__(self, redis: Redis, keys: RedisKeys, group: str = GROUP) -> None:
        self.redis = redis
        self.stream = keys.bus_stream()
        self.group = group

    async def oldest_unacked_ms(self) -> tuple[bool, int | None]:
        """(does the group exist, commit time of the oldest entry it has not acknowledged)."""
        try:
            groups = await self.redis.xinfo_groups(self.stream)
        except ResponseError:  # no stream yet
            return False, None
        info = next((g for g in groups if _text(g["name"]) == self.group), None)
        if info is None:
            return False, None
        times: list[int] = []
        if info["pending"]:
            summary = await self.redis.xpending(self.stream, self.group)
            if summary["min"] is not None:
                times += await _created_at_ms(self.redis, self.stream, _text(summary["min"]))
        times += await _created_at_ms(self.redis, self.stream, "(" + _text(info["last-delivered-id"]))
        return True, min(times) if times else None


def counters_freshness(counters: EventCounters, group_exists: bool, backlog_since_ms: int | None,
                       checked_at: dt.datetime) -> dt.datetime | None:
    """The ``as_of`` of the module docstring (None: the counters are not maintained)."""
    if not (group_exists and counters.backfilled):
        return None
    oldest = [checked_at]
    if counters.unpublished_since is not None:
        oldest.append(counters.unpublished_since)
    if backlog_since_ms is not None:
        oldest.append(dt.datetime.fromtimestamp(backlog_since_ms / 1000, dt.UTC))
    return min(oldest)


def net(totals: Counts) -> tuple[int, int, int]:
    """(tickets sold, orders, revenue) still standing: confirmed minus refunded."""
    return (totals.tickets - totals.refunded_tickets, totals.orders - totals.refunds,
            totals.revenue - totals.refunded_amount)

