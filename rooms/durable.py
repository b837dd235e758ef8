"""Rooms kept in PostgreSQL, copied into Redis: the admin's writes, the rebuild, the repair.

PostgreSQL (rooms/record_store.py) is the record of every room's settings, its event link and
its evictions; Redis holds the copy every Lua script reads. A write commits in PostgreSQL
first and is then copied into Redis; the one Redis write that must not wait for the commit is
the gate of a newly linked event, set just before COMMIT (a gate without a committed room only
asks for an admission token nobody can get yet: the safe side). A copy that fails after the
commit leaves a pending note that :meth:`DurableRooms.repair_pending` applies.

Redis versions every copy (the record's ``version``), so a late or repeated copy never replaces
a newer one; every step here is idempotent and may run in several processes at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec
from redis.exceptions import RedisError

from rooms.errors import EventAlreadyGated
from rooms.queue_store import QueueStore
from rooms.record_store import RoomRecord, RoomRecords, Written
from rooms.store import Room, RoomPatch, RoomStore, check_room_id
from stagedoor.single_flight import SingleFlight

logger = logging.getLogger(__name__)

KNOWN_IDS_TTL_S = 2.0  # the miss path asks PostgreSQL for the room ids at most this often
RESTORE_MIN_GAP_S = 1.0  # and restores one room at most this often


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ungated(old_event_id: str | None, new_event_id: str | None) -> bool:
    """The write took a gate away. Its pending note is then kept for the repair, which removes
    the link once more a second later: a rebuild (or an inventory load) that read PostgreSQL
    before the commit may have put it back meanwhile."""
    return old_event_id is not None and old_event_id != new_event_id


class DurableRooms:
    """The admin's room writes (PostgreSQL, then Redis) and the rebuild of Redis from PostgreSQL."""

    def __init__(self, records: RoomRecords, rooms: RoomStore, queue: QueueStore) -> None:
        self.records = records
        self.rooms = rooms
        self.queue = queue

    # -- writes: PostgreSQL commits, then Redis gets the copy
    async def _gate_ahead(self, room_id: str, new_event_id: str | None, old_event_id: str | None) -> None:
        if new_event_id and new_event_id != old_event_id:
            await self.rooms.set_link(new_event_id, room_id)

    async def _committed(self, written: Written, sold_out: bool | None) -> None:
        """Copy a committed write into Redis and clear its pending note (left for the repair if
        Redis fails; the RedisError goes on to the caller: a 503, the change is recorded)."""
        record = written.record
        try:
            await self.apply(record, old_event_ids=[written.old_event_id] if written.old_event_id else [],
                             sold_out_flag=sold_out)
        except RedisError:
            logger.warning("room_redis_copy_pending", extra={"room": record.room.room, "version": record.version})
            raise
        if not _ungated(written.old_event_id, record.room.event_id):
            await self.records.clear_pending(record.room.room, written.pending_id)

    async def put(self, room: Room, *, sold_out: bool | None = None) -> tuple[RoomRecord, bool]:
        gated: list[str] = []

        async def before_commit(new_event_id: str | None, old_event_id: str | None) -> None:
            await self._gate_ahead(room.room, new_event_id, old_event_id)
            if new_event_id and new_event_id != old_event_id:
                gated.append(new_event_id)

        try:
            written = await self.records.put(room, before_commit, sold_out=sold_out)
        except BaseException:
            await self._ungate_uncommitted(room.room, gated)
            raise
        await self._committed(written, sold_out)
        return written.record, written.created

    async def patch(self, room_id: str, patch: RoomPatch) -> RoomRecord:
        gated: list[str] = []

        async def before_commit(new_event_id: str | None, old_event_id: str | None) -> None:
            await self._gate_ahead(room_id, new_event_id, old_event_id)
            if new_event_id and new_event_id != old_event_id:
                gated.append(new_event_id)

        try:
            written = await self.records.patch(check_room_id(room_id), patch, before_commit)
        except BaseException:
            await self._ungate_uncommitted(room_id, gated)
            raise
        await self._committed(written, None if patch.sold_out is msgspec.UNSET else bool(patch.sold_out))
        return written.record

    async def _ungate_uncommitted(self, room_id: str, gated: list[str]) -> None:
        """The transaction failed after the gate went ahead: take it back unless PostgreSQL has it
        after all (a COMMIT whose answer was lost may have landed)."""
        for event_id in gated:
            try:
                record = await self.records.get(room_id)
                if record is None or record.room.event_id != event_id:
                    await self.rooms.unlink(event_id, room_id)
            except Exception:  # stays gated (the safe side) until the admin's retry lands, or mend_links
                logger.warning("room_gate_rollback_failed", extra={"room": room_id, "event_id": event_id})

    async def delete(self, room_id: str) -> bool:
        deleted = await self.records.delete(check_room_id(room_id))
        if deleted is None:
            return False
        event_id, pending_id = deleted
        await self.rooms.drop(room_id, [event_id] if event_id else [])
        if not _ungated(event_id, None):
            await self.records.clear_pending(room_id, pending_id)
        return True

    async def evict(self, room_id: str, visitor_id: str) -> tuple[str, bool, bool]:
        pending_id = await self.records.evict(check_room_id(room_id), visitor_id)
        outcome = await self.queue.evict(room_id, visitor_id)
        if outcome[0] == "no_room":  # recorded, but Redis lost the room: rebuild it (evictions included)
            await self.restore(room_id)
            outcome = ("ok", False, False)
        await self.records.clear_pending(room_id, pending_id)
        return outcome

    # -- the copy
    async def apply(self, record: RoomRecord, *, old_event_ids: list[str] | None = None,
                    sold_out_flag: bool | None = None, evictions: list[str] | None = None) -> str:
        """Write the record into Redis: config (versioned), index, link, sold-out, evictions; a
        room whose event is cancelled is closed for good there too (rooms.store.close_cancelled)."""
        room = record.room
        now_ms = _now_ms()
        outcome = await self.rooms.apply(room, record.version, now_ms, old_event_ids=old_event_ids or [],
                                         sold_out=sold_out_flag)
        if record.event_cancelled and room.event_id:
            await self.rooms.close_cancelled(room.room, room.event_id, now_ms)
        if evictions:
            await self.queue.evict_many(room.room, evictions)
        return outcome

    async def restore(self, room_id: str) -> RoomRecord | None:
        """Copy one room from PostgreSQL into Redis (None: PostgreSQL has no such room)."""
        record = await self.records.get(room_id)
        if record is None:
            return None
        await self.apply(record, sold_out_flag=True if record.sold_out else None,
                         evictions=await self.records.evictions(room_id))
        return record

    async def restore_all(self) -> int:
        """Copy every room from PostgreSQL into Redis; returns how many."""
        records = await self.records.all()
        for record in records:
            await self.apply(record, sold_out_flag=True if record.sold_out else None,
                             evictions=await self.records.evictions(record.room.room))
        return len(records)

    async def mend_links(self) -> int:
        """Make every event's link say what PostgreSQL says; returns how many were wrong. For a
        restart from an older snapshot, which may hold links PostgreSQL no longer has (an event
        over-gated by a room nobody can be admitted to) or lack newer ones."""
        gates = await self.records.event_gates()
        events = sorted(gates)
        mended = 0
        for event_id, linked in zip(events, await self.rooms.links(events), strict=True):
            wanted = gates[event_id]
            if linked == wanted:
                continue
            if wanted is not None:
                await self.rooms.set_link(event_id, wanted)
            elif linked is not None:
                await self.rooms.unlink(event_id, linked)
            mended += 1
        if mended:
            logger.warning("room_links_mended", extra={"events": mended})
        return mended

    async def repair_pending(self, older_than_s: float) -> int:
        """Apply the changes whose copy into Redis failed after their commit; returns how many rooms."""
        notes = await self.records.pending(older_than_s)
        for note in notes:
            record = await self.records.get(note.room_id)
            if record is None:
                await self.rooms.drop(note.room_id, note.old_event_ids)
            else:
                await self.apply(record, old_event_ids=note.old_event_ids,
                                 sold_out_flag=record.sold_out,
                                 evictions=await self.records.evictions(note.room_id))
            await self.records.clear_pending(note.room_id, note.upto)
            logger.warning("room_redis_repaired", extra={"room": note.room_id, "deleted": record is None})
        return len(notes)


async def _nothing(new_event_id: str | None, old_event_id: str | None) -> None:
    return None


async def adopt(durable: DurableRooms, room_id: str) -> RoomRecord | None:
    """Record a room that only Redis has because it was created before rooms were recorded in
    PostgreSQL (its config carries no record version); None for any other room. Its evictions
    come along; a room whose event another recorded room gates stays unrecorded (logged)."""
    if await durable.rooms.recorded_version(room_id) is not None:
        return None
    room = await durable.rooms.get(room_id)
    if room is None:
        return None
    try:
        written = await durable.records.put(room, _nothing)
    except EventAlreadyGated:
        logger.warning("room_adopt_conflict", extra={"room": room_id, "event_id": room.event_id})
        return None
    await durable.records.add_evictions(room_id, await durable.rooms.evicted_ids(room_id))
    await durable.apply(written.record)  # the config now carries its version: adopted once
    await durable.records.clear_pending(room_id, written.pending_id)
    logger.warning("room_adopted", extra={"room": room_id})
    return written.record


async def adopt_all(durable: DurableRooms) -> int:
    """:func:`adopt` every room of the Redis index that PostgreSQL does not have."""
    recorded = await durable.records.ids()
    adopted = 0
    for room_id in await durable.rooms.room_ids():
        if room_id not in recorded and await adopt(durable, room_id) is not None:
            adopted += 1
    return adopted


class RoomRestorer:
    """The miss path: a room unknown to Redis but recorded in PostgreSQL is copied back at once.

    Unknown ids cost PostgreSQL nothing per request: the set of recorded room ids is read at most
    every ``KNOWN_IDS_TTL_S`` (one read shared by every miss meanwhile), and an id outside it is
    refused from memory; a recorded room is restored at most every ``RESTORE_MIN_GAP_S``."""

    def __init__(self, durable: DurableRooms, clock: Callable[[], float] = time.monotonic) -> None:
        self.durable = durable
        self._clock = clock
        self._known: tuple[float, set[str]] | None = None
        self._failed: tuple[float, BaseException] | None = None  # PostgreSQL unreachable: not asked again at once
        self._known_read: SingleFlight[None, set[str]] = SingleFlight()
        self._restored_at: dict[str, float] = {}
        self._restored: dict[str, Room | None] = {}  # the last restore's answer, for RESTORE_MIN_GAP_S
        self._restores: SingleFlight[str, Room | None] = SingleFlight(on_result=self._restored.__setitem__)

    async def _known_ids(self) -> set[str]:
        now = self._clock()
        if self._known is not None and now - self._known[0] < KNOWN_IDS_TTL_S:
            return self._known[1]
        if self._failed is not None and now - self._failed[0] < KNOWN_IDS_TTL_S:
            raise self._failed[1]
        try:
            ids = await self._known_read.do(None, self.durable.records.ids)
        except Exception as exc:
            self._failed = (now, exc)
            raise
        self._known, self._failed = (now, ids), None
        return ids

    async def restore(self, room_id: str) -> Room | None:
        """The room's config once restored into Redis, None when PostgreSQL has no such room (or
        it was restored just now: the caller's Redis read stands)."""
        if room_id not in await self._known_ids():
            return None
        now = self._clock()
        if now - self._restored_at.get(room_id, -RESTORE_MIN_GAP_S) < RESTORE_MIN_GAP_S:
            running = self._restores.running(room_id)  # a request that missed while it ran: its answer
            return await asyncio.shield(running) if running is not None else self._restored.get(room_id)
        self._restored_at[room_id] = now
        if len(self._restored_at) > 10_000:
            self._restored_at.clear()
            self._restored.clear()
        return await self._restores.do(room_id, lambda: self._restore(room_id))

    async def _restore(self, room_id: str) -> Room | None:
        record = await self.durable.restore(room_id)
        if record is not None:
            logger.warning("room_restored_on_miss", extra={"room": room_id})
        return record.room if record is not None else None
