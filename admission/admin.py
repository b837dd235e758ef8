"""The admin API's domain: rooms as the SRE sees them (config plus live stats), with the
authorisation rule applied to every operation.

PostgreSQL is the record of rooms (rooms/record_store.py): configs are read from it and every
change commits there before Redis gets its copy (rooms/durable.py); live stats come from Redis."""

from __future__ import annotations

import logging
import re

import asyncpg
import msgspec

from admission.policy import may_manage_event
from rooms.durable import DurableRooms, adopt
from rooms.errors import RoomNotFound, VisitorNotFound
from rooms.queue_store import RATE_TAU_MS, QueueStore
from rooms.record_store import RoomRecords
from rooms.store import (
    DEFAULT_TARGET_ERROR_RATE,
    DEFAULT_TARGET_P99_MS,
    Mode,
    RateMode,
    Room,
    RoomConfig,
    RoomPatch,
    RoomStore,
    apply_patch,
    check_room_id,
    rfc3339,
    room_from_config,
)
from stagedoor.auth import Principal
from stagedoor.errors import Forbidden
from stagedoor.policy import Action, authorize_action

logger = logging.getLogger(__name__)

VISITOR_ID_RE = re.compile(r"^[0-9a-z]{1,13}_[A-Za-z0-9]{4,32}$")


class RoomOut(msgspec.Struct, kw_only=True):
    room: str
    event_id: str | None
    mode: Mode
    opens_at: str | None
    starts_at: str | None
    closes_at: str | None
    rate_per_s: float
    max_active: int
    session_ttl_s: int
    abandon_after_s: int
    pow_difficulty: int
    shop_url: str | None
    paused: bool
    title: str | None
    stock_factor: float
    stock_reserve_s: int
    waiting: int
    active: int
    admitted_total: int
    abandoned_total: int
    finished_total: int
    admit_rate_observed: float
    sold_out: bool
    all_held: bool
    tickets_free: int | None
    tickets_held: int | None
    rate_mode: RateMode = "fixed"
    rate_min_per_s: float | None = None
    rate_max_per_s: float | None = None
    target_p99_ms: int = DEFAULT_TARGET_P99_MS
    target_error_rate: float = DEFAULT_TARGET_ERROR_RATE
    rate_current_per_s: float = 0.0  # what admission runs at now (rate_mode auto: the controller's latest step)


class RoomList(msgspec.Struct, kw_only=True):
    items: list[RoomOut]


class Admin:
    def __init__(self, rooms: RoomStore, queue: QueueStore, db: asyncpg.Pool | None) -> None:
        self.rooms = rooms
        self.queue = queue
        self.db = db
        if db is None:
            raise ValueError("the admin API needs PostgreSQL (STAGEDOOR_DATABASE_URL): it is the record of rooms")
        self.durable = DurableRooms(RoomRecords(db), rooms, queue)

    async def _stored(self, room_id: str) -> Room | None:
        record = await self.durable.records.get(check_room_id(room_id))
        if record is None:  # created before rooms were recorded? Then it is recorded now.
            record = await adopt(self.durable, room_id)
        return record.room if record is not None else None

    async def _require(self, room_id: str) -> Room:
        room = await self._stored(room_id)
        if room is None:
            raise RoomNotFound(f"no room {room_id!r}")
        return room

    async def _authorize(self, principal: Principal, *event_ids: str | None, existing: Room | None = None) -> None:
        """Per room, after the route refused callers who may manage no room at all (403).

        ``existing``: the room as it is; a caller who may not manage it gets the very 404 a
        missing room gets, so an organizer learns nothing of other organizers' rooms.
        ``event_ids``: events the request names (a room's new event): not the caller's -> 403
        (unknown events alike, so nothing tells which events exist)."""
        if existing is not None and not await may_manage_event(self.db, principal, existing.event_id):
            raise RoomNotFound(f"no room {existing.room!r}")
        for event_id in event_ids:
            if not await may_manage_event(self.db, principal, event_id):
                raise Forbidden("admins may manage every room; organizers only rooms of their own events")

    async def view(self, room: Room, now_ms: int) -> RoomOut:
        stats = await self.rooms.stats(room.room, now_ms, RATE_TAU_MS)
        return RoomOut(
            room=room.room, event_id=room.event_id, mode=room.mode, opens_at=rfc3339(room.opens_at_ms),
            starts_at=rfc3339(room.starts_at_ms), closes_at=rfc3339(room.closes_at_ms), rate_per_s=room.rate_per_s,
            max_active=room.max_active, session_ttl_s=room.session_ttl_s, abandon_after_s=room.abandon_after_s,
            pow_difficulty=room.pow_difficulty, shop_url=room.shop_url, paused=room.paused, title=room.title,
            stock_factor=room.stock_factor, stock_reserve_s=room.stock_reserve_s, waiting=stats.waiting,
            active=stats.active, admitted_total=stats.admitted_total, abandoned_total=stats.abandoned_total,
            finished_total=stats.finished_total, admit_rate_observed=stats.admit_rate_observed,
            sold_out=stats.sold_out, all_held=stats.all_held, tickets_free=stats.tickets_free,
            tickets_held=stats.tickets_held, rate_mode=room.rate_mode, rate_min_per_s=room.rate_min_per_s,
            rate_max_per_s=room.rate_max_per_s, target_p99_ms=room.target_p99_ms,
            target_error_rate=room.target_error_rate, rate_current_per_s=stats.rate_current_per_s)

    async def put(self, principal: Principal, room_id: str, body: RoomConfig, now_ms: int) -> tuple[RoomOut, bool]:
        check_room_id(room_id)
        room = room_from_config(room_id, body, now_ms)
        old = await self._stored(room_id)
        await self._authorize(principal, room.event_id, *((old.event_id,) if old else ()))
        _, created = await self.durable.put(room)
        logger.info("room_put", extra={"room": room_id, "new_room": created, "mode": room.mode,
                                       "rate_per_s": room.rate_per_s, "max_active": room.max_active,
                                       "rate_mode": room.rate_mode})
        return await self.view(room, now_ms), created

    async def get(self, principal: Principal, room_id: str, now_ms: int) -> RoomOut:
        room = await self._require(room_id)
        await self._authorize(principal, existing=room)
        return await self.view(room, now_ms)

    async def patch(self, principal: Principal, room_id: str, patch: RoomPatch, now_ms: int) -> RoomOut:
        old = await self._require(room_id)
        new_event = apply_patch(old, patch).event_id  # validates before anything is written
        await self._authorize(principal, new_event, existing=old)
        room = (await self.durable.patch(room_id, patch)).room
        logger.info("room_patched", extra={"room": room_id, "fields": sorted(
            f for f in RoomPatch.__struct_fields__ if getattr(patch, f) is not msgspec.UNSET)})
        return await self.view(room, now_ms)

    async def set_paused(self, principal: Principal, room_id: str, paused: bool, now_ms: int) -> RoomOut:
        out = await self.patch(principal, room_id, RoomPatch(paused=paused), now_ms)
        logger.info("room_paused" if paused else "room_resumed", extra={"room": room_id})
        return out

    async def delete(self, principal: Principal, room_id: str) -> None:
        room = await self._require(room_id)
        await self._authorize(principal, existing=room)
        if not await self.durable.delete(room_id):
            raise RoomNotFound(f"no room {room_id!r}")
        logger.info("room_deleted", extra={"room": room_id})

    async def evict(self, principal: Principal, room_id: str, visitor_id: str) -> None:
        room = await self._require(room_id)
        await self._authorize(principal, existing=room)
        if not VISITOR_ID_RE.match(visitor_id):
            raise VisitorNotFound(f"no visitor {visitor_id[:80]!r}")
        outcome, was_waiting, was_active = await self.durable.evict(room_id, visitor_id)
        if outcome == "no_room":
            raise RoomNotFound(f"no room {room_id!r}")
        logger.info("visitor_evicted", extra={"room": room_id, "was_waiting": was_waiting, "was_active": was_active})

    async def list(self, principal: Principal, now_ms: int) -> RoomList:
        """Admins: every room. Organizers (or their clients with scope rooms:write): the rooms of
        their events. Anyone else: 403."""
        authorize_action(principal, Action.ROOM_LIST)
        items = []
        for record in await self.durable.records.all():
            if not await may_manage_event(self.db, principal, record.room.event_id):
                continue
            items.append(await self.view(record.room, now_ms))
        return RoomList(items=items)
