"""The record of rooms in PostgreSQL (migration 0009): configs, the event -> room link,
evictions, and the rooms whose Redis copy may be behind (``room_redis_pending``).

Every write runs in one transaction that also notes the room as pending; the caller copies the
change to Redis after the commit and then clears the note (:meth:`RoomRecords.clear_pending`).
A note left behind (Redis failed after the commit) is applied by the rebuild loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

import asyncpg
import msgspec

from rooms.errors import EventAlreadyGated, RoomNotFound
from rooms.store import Mode, RateMode, Room, RoomPatch, apply_patch

# Runs inside the write's transaction, after every statement and before COMMIT: (new event id,
# old event id). The admin path gates a newly linked event in Redis here, so there is no moment
# at which PostgreSQL says "gated" and Redis does not (see docs/decisions/0009).
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
BeforeCommit = Callable[[str | None, str | None], Awaitable[None]]

_COLUMNS = """r.room_id, r.mode, r.opens_at_ms, r.starts_at_ms, r.closes_at_ms, r.rate_per_s, r.max_active,
       r.session_ttl_s, r.abandon_after_s, r.pow_difficulty, r.shop_url, r.paused, r.title, r.sold_out,
       r.stock_factor, r.stock_reserve_s, r.version, l.event_id, r.rate_mode, r.rate_min_per_s, r.rate_max_per_s,
       r.target_p99_ms, r.target_error_rate,
       COALESCE((SELECT e.status = 'sold_out' FROM events e WHERE e.id::text = l.event_id), false) AS event_sold_out,
       COALESCE((SELECT e.status = 'cancelled' FROM events e WHERE e.id::text = l.event_id), false)
           AS event_cancelled"""
SELECT_ROOM = f"SELECT {_COLUMNS} FROM rooms r LEFT JOIN room_events l ON l.room_id = r.room_id WHERE r.room_id = $1"
SELECT_ROOM_FOR_UPDATE = f"""
SELECT {_COLUMNS} FROM rooms r LEFT JOIN room_events l ON l.room_id = r.room_id WHERE r.room_id = $1
FOR UPDATE OF r
"""
SELECT_ROOMS = f"SELECT {_COLUMNS} FROM rooms r LEFT JOIN room_events l ON l.room_id = r.room_id ORDER BY r.room_id"
SELECT_ROOM_IDS = "SELECT room_id FROM rooms"
EVENT_CANCELLED = "SELECT COALESCE((SELECT status = 'cancelled' FROM events WHERE id::text = $1), false)"
UPSERT_ROOM = """
INSERT INTO rooms (room_id, mode, opens_at_ms, starts_at_ms, closes_at_ms, rate_per_s, max_active, session_ttl_s,
                   abandon_after_s, pow_difficulty, shop_url, paused, title, sold_out, stock_factor,
                   stock_reserve_s)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, COALESCE($14, false), $15, $16)
ON CONFLICT (room_id) DO UPDATE SET
    mode = EXCLUDED.mode, opens_at_ms = EXCLUDED.opens_at_ms, starts_at_ms = EXCLUDED.starts_at_ms,
    closes_at_ms = EXCLUDED.closes_at_ms, rate_per_s = EXCLUDED.rate_per_s, max_active = EXCLUDED.max_active,
    session_ttl_s = EXCLUDED.session_ttl_s, abandon_after_s = EXCLUDED.abandon_after_s,
    pow_difficulty = EXCLUDED.pow_difficulty, shop_url = EXCLUDED.shop_url, paused = EXCLUDED.paused,
    title = EXCLUDED.title, sold_out = COALESCE($14, rooms.sold_out), stock_factor = EXCLUDED.stock_factor,
    stock_reserve_s = EXCLUDED.stock_reserve_s,
    version = rooms.version + 1, updated_at = now()
RETURNING version, sold_out, (xmax = 0) AS created
"""
# The automatic rate's settings (migration 0015), written in the same transaction as the upsert above.
UPDATE_RATE_SETTINGS = """
UPDATE rooms SET rate_mode = $2, rate_min_per_s = $3, rate_max_per_s = $4, target_p99_ms = $5, target_error_rate = $6
WHERE room_id = $1
"""
DELETE_LINK = "DELETE FROM room_events WHERE room_id = $1"
INSERT_LINK = "INSERT INTO room_events (event_id, room_id) VALUES ($1, $2)"
LINK_OWNER = "SELECT room_id FROM room_events WHERE event_id = $1"
DELETE_ROOM = "DELETE FROM rooms WHERE room_id = $1 RETURNING room_id"
INSERT_EVICTION = """
INSERT INTO room_evictions (room_id, visitor_id) VALUES ($1, $2) ON CONFLICT (room_id, visitor_id) DO NOTHING
"""
SELECT_EVICTIONS = "SELECT visitor_id FROM room_evictions WHERE room_id = $1 ORDER BY evicted_at, visitor_id"
INSERT_EVICTIONS = """
INSERT INTO room_evictions (room_id, visitor_id) SELECT $1, v FROM unnest($2::text[]) AS v
ON CONFLICT (room_id, visitor_id) DO NOTHING
"""
# Every event that can be sold or go on sale, with the room PostgreSQL says gates it (if any).
SELECT_EVENT_GATES = """
SELECT e.id::text AS event_id, l.room_id FROM events e LEFT JOIN room_events l ON l.event_id = e.id::text
WHERE e.status IN ('draft', 'on_sale', 'sold_out')
"""
INSERT_PENDING = "INSERT INTO room_redis_pending (room_id, old_event_id) VALUES ($1, $2) RETURNING id"
CLEAR_PENDING = "DELETE FROM room_redis_pending WHERE room_id = $1 AND id <= $2"
SELECT_PENDING = """
SELECT room_id, max(id) AS upto, array_remove(array_agg(DISTINCT old_event_id), NULL) AS old_event_ids
FROM room_redis_pending WHERE created_at < now() - make_interval(secs => $1)
GROUP BY room_id ORDER BY min(id) LIMIT $2
"""


class RoomRecord(msgspec.Struct, kw_only=True):
    """A room as PostgreSQL records it. ``sold_out``: the admin's flag, or its event sold out.
    A room whose event is cancelled reads ``closed`` and not sold out, whatever its stored mode:
    every copy into Redis (a rebuild after data loss, a repair, an admin write) keeps it closed."""

    room: Room
    sold_out: bool
    version: int
    event_cancelled: bool = False


class Written(msgspec.Struct, kw_only=True):
    """What a write committed: the record, whether the room is new, the event it gated before,
    and the pending note to clear once Redis has the change."""

    record: RoomRecord
    created: bool
    old_event_id: str | None
    pending_id: int


class Pending(msgspec.Struct, kw_only=True):
    room_id: str
    upto: int
    old_event_ids: list[str]


def _record(row: asyncpg.Record) -> RoomRecord:
    room = Room(room=row["room_id"], event_id=row["event_id"], mode=cast(Mode, row["mode"]),
                opens_at_ms=row["opens_at_ms"], starts_at_ms=row["starts_at_ms"], closes_at_ms=row["closes_at_ms"],
                rate_per_s=row["rate_per_s"], max_active=row["max_active"], session_ttl_s=row["session_ttl_s"],
                abandon_after_s=row["abandon_after_s"], pow_difficulty=row["pow_difficulty"],
                shop_url=row["shop_url"], paused=row["paused"], title=row["title"],
                stock_factor=row["stock_factor"], stock_reserve_s=row["stock_reserve_s"],
                rate_mode=cast(RateMode, row["rate_mode"]), rate_min_per_s=row["rate_min_per_s"],
                rate_max_per_s=row["rate_max_per_s"], target_p99_ms=row["target_p99_ms"],
                target_error_rate=row["target_error_rate"])
    if row["event_cancelled"]:
        return _closed_by_cancellation(room, row["version"])
    return RoomRecord(room=room, sold_out=bool(row["sold_out"] or row["event_sold_out"]), version=row["version"])


def _closed_by_cancellation(room: Room, version: int) -> RoomRecord:
    return RoomRecord(room=msgspec.structs.replace(room, mode="closed"), sold_out=False, version=version,
                      event_cancelled=True)


class RoomRecords:
    """Reads and writes of the rooms record (asyncpg pool)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, room_id: str) -> RoomRecord | None:
        row = await self.pool.fetchrow(SELECT_ROOM, room_id)
        return None if row is None else _record(row)

    async def all(self) -> list[RoomRecord]:
        return [_record(row) for row in await self.pool.fetch(SELECT_ROOMS)]

    async def ids(self) -> set[str]:
        return {row["room_id"] for row in await self.pool.fetch(SELECT_ROOM_IDS)}

    async def evictions(self, room_id: str) -> list[str]:
        return [row["visitor_id"] for row in await self.pool.fetch(SELECT_EVICTIONS, room_id)]

    async def put(self, room: Room, before_commit: BeforeCommit, *, sold_out: bool | None = None) -> Written:
        """Create or replace the room and its link (409 if another room gates the event)."""
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow(SELECT_ROOM_FOR_UPDATE, room.room)
            return await self._write(conn, room, old["event_id"] if old else None, before_commit, sold_out)

    async def patch(self, room_id: str, patch: RoomPatch, before_commit: BeforeCommit) -> Written:
        """Change some fields of an existing room (404 if none), validated against the stored record."""
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow(SELECT_ROOM_FOR_UPDATE, room_id)
            if old is None:
                raise RoomNotFound(f"no room {room_id!r}")
            room = apply_patch(_record(old).room, patch)
            sold_out = None if patch.sold_out is msgspec.UNSET else bool(patch.sold_out)
            return await self._write(conn, room, old["event_id"], before_commit, sold_out)

    async def _write(self, conn: Conn, room: Room, old_event_id: str | None,
                     before_commit: BeforeCommit, sold_out: bool | None) -> Written:
        row = await conn.fetchrow(  # always a row (RETURNING)
            UPSERT_ROOM, room.room, room.mode, room.opens_at_ms, room.starts_at_ms, room.closes_at_ms,
            room.rate_per_s, room.max_active, room.session_ttl_s, room.abandon_after_s, room.pow_difficulty,
            room.shop_url, room.paused, room.title, sold_out, room.stock_factor, room.stock_reserve_s)
        await conn.execute(UPDATE_RATE_SETTINGS, room.room, room.rate_mode, room.rate_min_per_s, room.rate_max_per_s,
                           room.target_p99_ms, room.target_error_rate)
        if room.event_id != old_event_id:
            await conn.execute(DELETE_LINK, room.room)
            if room.event_id:
                await self._link(conn, room.event_id, room.room)
        pending_id = await conn.fetchval(INSERT_PENDING, room.room, old_event_id)
        await before_commit(room.event_id, old_event_id)
        assert row is not None
        if room.event_id and await conn.fetchval(EVENT_CANCELLED, room.event_id):
            record = _closed_by_cancellation(room, row["version"])
        else:
            record = RoomRecord(room=room, sold_out=bool(row["sold_out"]), version=row["version"])
        return Written(record=record, created=bool(row["created"]), old_event_id=old_event_id,
                       pending_id=pending_id)

    async def _link(self, conn: Conn, event_id: str, room_id: str) -> None:
        try:
            async with conn.transaction():  # a savepoint: the error below is ours to report
                await conn.execute(INSERT_LINK, event_id, room_id)
        except asyncpg.UniqueViolationError:
            other = await conn.fetchval(LINK_OWNER, event_id)
            raise EventAlreadyGated(f"event {event_id} is already gated by room {other!r}", room=other) from None

    async def delete(self, room_id: str) -> tuple[str | None, int] | None:
        """Delete the room, its link and evictions: (the event it gated, pending note), None if absent."""
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow(SELECT_ROOM_FOR_UPDATE, room_id)
            if old is None:
                return None
            await conn.execute(DELETE_ROOM, room_id)
            pending_id = await conn.fetchval(INSERT_PENDING, room_id, old["event_id"])
            return old["event_id"], pending_id

    async def evict(self, room_id: str, visitor_id: str) -> int:
        """Record the eviction (404 if the room is not recorded); returns the pending note."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchrow(SELECT_ROOM_FOR_UPDATE, room_id) is None:
                raise RoomNotFound(f"no room {room_id!r}")
            await conn.execute(INSERT_EVICTION, room_id, visitor_id)
            pending_id: int = await conn.fetchval(INSERT_PENDING, room_id, None)
            return pending_id

    async def event_gates(self) -> dict[str, str | None]:
        """Event id -> the room gating it (None: not gated), for every event not cancelled."""
        return {r["event_id"]: r["room_id"] for r in await self.pool.fetch(SELECT_EVENT_GATES)}

    async def add_evictions(self, room_id: str, visitor_ids: list[str]) -> None:
        if visitor_ids:
            await self.pool.execute(INSERT_EVICTIONS, room_id, visitor_ids)

    async def clear_pending(self, room_id: str, upto: int) -> None:
        await self.pool.execute(CLEAR_PENDING, room_id, upto)

    async def pending(self, older_than_s: float, limit: int = 100) -> list[Pending]:
        """Rooms whose Redis copy may be behind: notes older than ``older_than_s`` (a write in
        flight clears its own note within that)."""
        rows = await self.pool.fetch(SELECT_PENDING, older_than_s, limit)
        return [Pending(room_id=r["room_id"], upto=r["upto"], old_event_ids=list(r["old_event_ids"])) for r in rows]
