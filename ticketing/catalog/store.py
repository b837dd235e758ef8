"""EventStore: the catalog's SQL (venues, events, price tiers, seats) and the sold-items read
that the inventory rebuild needs. Rows in, domain records out; no HTTP here."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import asyncpg.pool
import msgspec

from stagedoor.bus_events import BusEvent, EventCreated, EventPublished, EventUpdated, to_payload
from ticketing.catalog.errors import InvalidCursor
from ticketing.catalog.types import EventSearch


class TierRow(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name: str
    price: int
    quantity: int | None


class EventFields(msgspec.Struct, frozen=True, kw_only=True):
    """What an organizer says about an event: shared by a new event and a stored one."""

    organizer_id: str
    status: str
    title: str
    description: str
    category: str
    venue_name: str
    venue_city: str
    venue_address: str
    starts_at: datetime
    ends_at: datetime
    currency: str
    max_tickets_per_order: int
    hold_ttl_s: int | None
    tiers: tuple[TierRow, ...]


class EventRow(EventFields, frozen=True, kw_only=True):
    id: int
    seated: bool
    created_at: datetime
    seat_counts: dict[str, int]  # seated tier -> number of seats


class NewEvent(EventFields, frozen=True, kw_only=True):
    # (section, row, number, tier) in seat-map order; ids are assigned here: "s1", "s2", ...
    seats: Sequence[tuple[str, str, str, str]]


UPSERT_VENUE = """
INSERT INTO venues (name, city, address) VALUES ($1, $2, $3)
ON CONFLICT (name, city, address) DO UPDATE SET name = EXCLUDED.name
RETURNING id
"""
INSERT_EVENT = """
INSERT INTO events (organizer_id, venue_id, status, title, description, category, city, starts_at, ends_at,
                    currency, max_tickets_per_order, hold_ttl_s, seated, min_price, max_price)
VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
RETURNING id
"""
SELECT_EVENT = """
SELECT e.id, e.organizer_id::text AS organizer_id, e.status, e.title, e.description, e.category,
       v.name AS venue_name, v.city AS venue_city, v.address AS venue_address, e.starts_at, e.ends_at,
       e.currency, e.max_tickets_per_order, e.hold_ttl_s, e.seated, e.created_at
FROM events e JOIN venues v ON v.id = e.venue_id
WHERE e.id = $1
"""
SELECT_TIERS = """
SELECT t.code, t.name, t.price, t.quantity,
       (SELECT count(*) FROM seats s WHERE s.event_id = t.event_id AND s.tier_code = t.code) AS seats
FROM price_tiers t WHERE t.event_id = $1 ORDER BY t.position
"""
SELECT_SEATS = """
SELECT id, section, row_label, number, tier_code FROM seats WHERE event_id = $1 ORDER BY position
"""
SELECT_SEAT_TIERS = "SELECT id, tier_code FROM seats WHERE event_id = $1 ORDER BY position"
# What PostgreSQL says is sold (tickets table of migration 0004, written by the purchase code).
SELECT_SOLD_SEATS = "SELECT seat_id FROM tickets WHERE event_id = $1 AND seat_id IS NOT NULL"
SELECT_SOLD_GA = "SELECT tier, count(*) AS n FROM tickets WHERE event_id = $1 AND seat_id IS NULL GROUP BY tier"
TICKETS_TABLE_EXISTS = "SELECT to_regclass('tickets') IS NOT NULL"
# The waiting room gating the event (room_events of migration 0009, written by the admin API).
SELECT_GATING_ROOM = "SELECT room_id FROM room_events WHERE event_id = $1"
SET_STATUS = "UPDATE events SET status = $2, updated_at = now() WHERE id = $1 RETURNING id"
CANCEL_EVENT = """
UPDATE events SET status = 'cancelled', cancelled_at = now(), updated_at = now()
WHERE id = $1 AND status <> 'cancelled' AND close_event_sales($1) RETURNING id
"""
INSERT_OUTBOX = """
INSERT INTO outbox (event_id, event_type, aggregate_id, payload) VALUES ($1, $2, $3, $4::jsonb)
ON CONFLICT (event_id) DO NOTHING
"""
SELECT_SELLABLE_EVENTS = "SELECT id FROM events WHERE status IN ('on_sale', 'sold_out') ORDER BY id"
PATCHABLE = ("title", "description", "category", "starts_at", "ends_at", "max_tickets_per_order", "hold_ttl_s")


def encode_cursor(sort: str, value: Any, event_id: int) -> str:
    raw = json.dumps([sort, value.isoformat() if isinstance(value, datetime) else value, event_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(sort: str, cursor: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cur_sort, value, event_id = json.loads(raw)
        if cur_sort != sort or not isinstance(event_id, int):
            raise ValueError("cursor of another sort")
        if sort.lstrip("-") == "starts_at":
            value = datetime.fromisoformat(value)
        elif not isinstance(value, int):
            raise ValueError("bad price")
    except (ValueError, TypeError) as exc:
        raise InvalidCursor("the cursor is malformed or belongs to another query",
                            errors=[{"field": "$.cursor", "message": "invalid"}]) from exc
    return value, event_id


def search_sql(s: EventSearch) -> tuple[str, list[Any]]:
    """The event search as (SQL, arguments): fetches ``limit + 1`` rows (the extra one says whether
    there is a next page). Every filter is served by an index of migrations 0003/0007, proven by
    EXPLAIN on 100,000 events in tests/ticketing/test_search_plan.py."""
    where = ["e.status IN ('on_sale', 'sold_out')"]
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if s.q:
        where.append(f"e.search @@ plainto_tsquery('simple', {arg(s.q)})")
    if s.category:
        where.append(f"lower(e.category) = lower({arg(s.category)})")
    if s.city:
        where.append(f"lower(e.city) = lower({arg(s.city)})")
    if s.from_:
        where.append(f"e.starts_at >= {arg(s.from_)}")
    if s.to:
        where.append(f"e.starts_at < {arg(s.to)}")
    if s.min_price is not None:
        where.append(f"e.max_price >= {arg(s.min_price)}")
    if s.max_price is not None:
        where.append(f"e.min_price <= {arg(s.max_price)}")
    # Availability from the bus read model (ticketing/consumers.py ReadModel), never from
    # the hot Redis inventory: tickets_left is NULL until the model saw the event (trust status).
    if s.available is True:
        where.append("e.status = 'on_sale' AND coalesce(e.tickets_left, 1) > 0")
    elif s.available is False:
        where.append("(e.status = 'sold_out' OR e.tickets_left = 0)")
    column = "e.starts_at" if s.sort.lstrip("-") == "starts_at" else "e.min_price"
    desc = s.sort.startswith("-")
    if s.cursor:
        value, last_id = decode_cursor(s.sort, s.cursor)
        op = "<" if desc else ">"
        where.append(f"({column}, e.id) {op} ({arg(value)}, {arg(last_id)})")
    order = "DESC" if desc else "ASC"
    sql = f"""
        SELECT e.id, e.status, e.title, e.category, e.city, v.name AS venue, e.starts_at, e.ends_at,
               e.currency, e.min_price, e.max_price
        FROM events e JOIN venues v ON v.id = e.venue_id
        WHERE {' AND '.join(where)}
        ORDER BY {column} {order}, e.id {order}
        LIMIT {arg(s.limit + 1)}
    """  # only fixed fragments are interpolated
    return sql, args


async def _announce(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, aggregate_id: str,
                    events: Sequence[BusEvent]) -> None:
    """Outbox rows for catalog changes, in the caller's transaction (the relay publishes them)."""
    await conn.executemany(INSERT_OUTBOX, [(str(uuid.uuid4()), e.TYPE, aggregate_id, json.dumps(to_payload(e)))
                                           for e in events])


SEAT_CACHE_EVENTS = 8  # seat maps never change after creation: keep the last few in memory


ORGANIZER_EVENTS = """
SELECT e.id::text AS id, e.organizer_id::text AS organizer_id, e.status, e.title, e.category, e.city,
       v.name AS venue, e.starts_at, e.currency,
       (SELECT count(*) FROM seats s WHERE s.event_id = e.id)
         + (SELECT coalesce(sum(t.quantity), 0) FROM price_tiers t WHERE t.event_id = e.id) AS capacity,
       (SELECT count(*) FROM tickets k WHERE k.event_id = e.id) AS sold
FROM events e JOIN venues v ON v.id = e.venue_id
WHERE ($1::uuid IS NULL OR e.organizer_id = $1::uuid)
  AND ($2::text IS NULL OR e.status = $2::text)
  AND ($3::bigint IS NULL OR e.id < $3::bigint)
ORDER BY e.id DESC
LIMIT $4
"""


class EventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._seat_cache: OrderedDict[int, list[asyncpg.Record]] = OrderedDict()

    async def create(self, new: NewEvent) -> int:
        """One transaction: venue, event, tiers, and the seats by COPY (100k seats in well under 5 s)."""
        prices = [t.price for t in new.tiers]
        async with self.pool.acquire() as conn, conn.transaction():
            venue_id = await conn.fetchval(UPSERT_VENUE, new.venue_name, new.venue_city, new.venue_address)
            event_id = await conn.fetchval(
                INSERT_EVENT, new.organizer_id, venue_id, new.status, new.title, new.description, new.category,
                new.venue_city, new.starts_at, new.ends_at, new.currency, new.max_tickets_per_order,
                new.hold_ttl_s, bool(new.seats), min(prices), max(prices))
            await conn.copy_records_to_table(
                "price_tiers", columns=["event_id", "code", "name", "price", "quantity", "position"],
                records=[(event_id, t.code, t.name, t.price, t.quantity, i) for i, t in enumerate(new.tiers)])
            if new.seats:
                await conn.copy_records_to_table(
                    "seats", columns=["event_id", "id", "section", "row_label", "number", "tier_code", "position"],
                    records=[(event_id, f"s{i}", sec, row, num, tier, i)
                             for i, (sec, row, num, tier) in enumerate(new.seats, start=1)])
            ev, starts = str(event_id), new.starts_at.isoformat()
            announced: list[BusEvent] = [EventCreated(event_id=ev, organizer_id=new.organizer_id, status=new.status,
                                                      title=new.title, starts_at=starts)]
            if new.status == "on_sale":
                announced.append(EventPublished(event_id=ev, title=new.title, starts_at=starts))
            await _announce(conn, ev, announced)
        return int(event_id)

    async def gating_room(self, event_id: int) -> str | None:
        """The id of the waiting room PostgreSQL says gates the event, None when it is not gated."""
        room: str | None = await self.pool.fetchval(SELECT_GATING_ROOM, str(event_id))
        return room

    async def get(self, event_id: int) -> EventRow | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(SELECT_EVENT, event_id)
            if row is None:
                return None
            tiers = await conn.fetch(SELECT_TIERS, event_id)
        return EventRow(
            **dict(row),
            tiers=tuple(TierRow(code=t["code"], name=t["name"], price=t["price"], quantity=t["quantity"])
                        for t in tiers),
            seat_counts={t["code"]: int(t["seats"]) for t in tiers if t["quantity"] is None},
        )

    async def seats(self, event_id: int) -> list[asyncpg.Record]:
        """The seat map (id, section, row_label, number, tier_code) in order; immutable, so cached."""
        cached = self._seat_cache.get(event_id)
        if cached is not None:
            self._seat_cache.move_to_end(event_id)
            return cached
        rows = await self.pool.fetch(SELECT_SEATS, event_id)
        self._seat_cache[event_id] = rows
        while len(self._seat_cache) > SEAT_CACHE_EVENTS:
            self._seat_cache.popitem(last=False)
        return rows

    async def seat_tiers(self, event_id: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(SELECT_SEAT_TIERS, event_id)

    async def sold(self, event_id: int) -> tuple[set[str], dict[str, int]]:
        """Seats sold and general-admission tickets sold per tier, per PostgreSQL (the truth)."""
        async with self.pool.acquire() as conn:
            if not await conn.fetchval(TICKETS_TABLE_EXISTS):
                return set(), {}
            seats = {r["seat_id"] for r in await conn.fetch(SELECT_SOLD_SEATS, event_id)}
            ga = {r["tier"]: int(r["n"]) for r in await conn.fetch(SELECT_SOLD_GA, event_id)}
        return seats, ga

    async def update(self, event_id: int, fields: dict[str, Any], venue: tuple[str, str, str] | None,
                     status: str | None) -> None:
        sets: list[str] = []
        args: list[Any] = [event_id]
        async with self.pool.acquire() as conn, conn.transaction():
            if venue is not None:
                venue_id = await conn.fetchval(UPSERT_VENUE, *venue)
                args += [venue_id, venue[1]]
                sets += [f"venue_id = ${len(args) - 1}", f"city = ${len(args)}"]
            for name in PATCHABLE:
                if name in fields:
                    args.append(fields[name])
                    sets.append(f"{name} = ${len(args)}")
            if status is not None:
                args.append(status)
                sets.append(f"status = ${len(args)}")
            sets.append("updated_at = now()")
            row = await conn.fetchrow(
                f"UPDATE events SET {', '.join(sets)} WHERE id = $1 RETURNING status, title, starts_at, "
                "(SELECT status FROM events WHERE id = $1) AS old_status", *args)
            if row is None:
                return
            ev, starts = str(event_id), row["starts_at"].isoformat()
            changed = sorted([*fields, *(["venue"] if venue is not None else []),
                              *(["status"] if status is not None else [])])
            announced: list[BusEvent] = [EventUpdated(
                event_id=ev, fields=changed, status=row["status"], title=row["title"], starts_at=starts,
                changed_at_ms=int(time.time() * 1000))]
            if row["old_status"] == "draft" and row["status"] == "on_sale":
                announced.append(EventPublished(event_id=ev, title=row["title"], starts_at=starts))
            await _announce(conn, ev, announced)

    async def cancel(self, event_id: int, outbox_id: str, payload: dict[str, Any]) -> bool:
        """Status cancelled and an EventCancelled outbox row, in one transaction. False if already cancelled."""
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(CANCEL_EVENT, event_id)
            if done is None:
                return False
            await conn.execute(INSERT_OUTBOX, outbox_id, "EventCancelled", str(event_id), json.dumps(payload))
        return True

    async def write_outbox(self, rows: Sequence[tuple[str, str, str, dict[str, Any]]]) -> None:
        """(outbox event_id uuid, event_type, aggregate_id, payload); duplicates by event_id are skipped."""
        if not rows:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(INSERT_OUTBOX, [(r[0], r[1], r[2], json.dumps(r[3])) for r in rows])

    async def sellable_event_ids(self) -> list[int]:
        return [r["id"] for r in await self.pool.fetch(SELECT_SELLABLE_EVENTS)]

    async def search(self, s: EventSearch) -> tuple[list[asyncpg.Record], str | None]:
        sql, args = search_sql(s)
        rows = await self.pool.fetch(sql, *args)
        next_cursor = None
        if len(rows) > s.limit:
            rows = rows[: s.limit]
            last = rows[-1]
            value = last["starts_at"] if s.sort.lstrip("-") == "starts_at" else last["min_price"]
            next_cursor = encode_cursor(s.sort, value, last["id"])
        return rows, next_cursor

    async def organizer_events(self, organizer_id: str | None, status: str | None, before_id: int | None,
                               limit: int) -> list[asyncpg.Record]:
        """Events newest first (``organizer_id`` None: everybody's), with capacity and tickets sold."""
        return await self.pool.fetch(ORGANIZER_EVENTS, organizer_id, status, before_id, limit)
