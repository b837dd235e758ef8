"""Room configuration: the wire types of the admin API, validation, and the Redis store.

A room's configuration lives in one hash (``RedisKeys.room_config``) that every Lua script
of the room reads on each call, so an admin change is effective at the next admission tick
(``admission_tick_ms``, 100 ms by default): well within the 1 s the contract promises.
Times are stored as epoch milliseconds, rates as decimal strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Literal, cast

import msgspec
from redis.asyncio import Redis

from rooms.errors import EventAlreadyGated, RoomNotFound
from stagedoor.errors import InvalidInput
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys

Mode = Literal["fifo", "lottery", "passthrough", "closed"]
ROOM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_ABANDON_AFTER_S = 600

Aware = Annotated[datetime, msgspec.Meta(tz=True)]
EventId = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,19}$")]
Rate = Annotated[float, msgspec.Meta(gt=0, le=100_000)]
MaxActive = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
SessionTtl = Annotated[int, msgspec.Meta(ge=10, le=7200)]
AbandonAfter = Annotated[int, msgspec.Meta(ge=0, le=MAX_ABANDON_AFTER_S)]
PowDifficulty = Annotated[int, msgspec.Meta(ge=0, le=32)]
# Shoppers per free ticket the room lets in at most (docs/admission.md "Admission and the stock").
StockFactor = Annotated[float, msgspec.Meta(ge=0.1, le=100)]
# How long an admitted fan who has not held yet counts against the free tickets.
StockReserve = Annotated[int, msgspec.Meta(ge=5, le=3600)]
# No NUL anywhere: PostgreSQL text cannot hold it (rooms are recorded there), so it is a 400, not a 500.
ShopUrl = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^(https?://[^\s\x00]+|/[^\s\x00]*)$")]
# What the queue page names the sale by (e.g. the event's title); shown as text, never as HTML.
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
# Automatic admission rate (admission/rate_control.py, docs/admission.md "Automatic rate").
RateMode = Literal["fixed", "auto"]
TargetP99 = Annotated[int, msgspec.Meta(ge=10, le=60_000)]
TargetErrorRate = Annotated[float, msgspec.Meta(gt=0, le=0.5)]
DEFAULT_TARGET_P99_MS = 1000
DEFAULT_TARGET_ERROR_RATE = 0.01


class RoomConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PUT /admin/rooms/{room} body. Omitted times default to "now" (open and selling)."""

    event_id: EventId | None = None
    mode: Mode = "fifo"
    opens_at: Aware | None = None
    starts_at: Aware | None = None
    closes_at: Aware | None = None
    rate_per_s: Rate = 10.0
    max_active: MaxActive = 1000
    session_ttl_s: SessionTtl = 600
    abandon_after_s: AbandonAfter = 60
    pow_difficulty: PowDifficulty = 0
    shop_url: ShopUrl | None = None
    paused: bool = False
    title: Title | None = None
    stock_factor: StockFactor = 1.0
    stock_reserve_s: StockReserve = 60
    # automatic rate: rate_per_s is then the starting rate, kept between the bounds
    rate_mode: RateMode = "fixed"
    rate_min_per_s: Rate | None = None
    rate_max_per_s: Rate | None = None
    target_p99_ms: TargetP99 = DEFAULT_TARGET_P99_MS
    target_error_rate: TargetErrorRate = DEFAULT_TARGET_ERROR_RATE


class RoomPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """PATCH /admin/rooms/{room} body: any subset of the config fields (null clears an
    optional one), plus ``sold_out`` (the admin form of ticketing's sold-out signal)."""

    event_id: EventId | msgspec.UnsetType | None = msgspec.UNSET
    mode: Mode | msgspec.UnsetType = msgspec.UNSET
    opens_at: Aware | msgspec.UnsetType = msgspec.UNSET
    starts_at: Aware | msgspec.UnsetType = msgspec.UNSET
    closes_at: Aware | msgspec.UnsetType | None = msgspec.UNSET
    rate_per_s: Rate | msgspec.UnsetType = msgspec.UNSET
    max_active: MaxActive | msgspec.UnsetType = msgspec.UNSET
    session_ttl_s: SessionTtl | msgspec.UnsetType = msgspec.UNSET
    abandon_after_s: AbandonAfter | msgspec.UnsetType = msgspec.UNSET
    pow_difficulty: PowDifficulty | msgspec.UnsetType = msgspec.UNSET
    shop_url: ShopUrl | msgspec.UnsetType | None = msgspec.UNSET
    paused: bool | msgspec.UnsetType = msgspec.UNSET
    title: Title | msgspec.UnsetType | None = msgspec.UNSET
    stock_factor: StockFactor | msgspec.UnsetType = msgspec.UNSET
    stock_reserve_s: StockReserve | msgspec.UnsetType = msgspec.UNSET
    sold_out: bool | msgspec.UnsetType = msgspec.UNSET
    rate_mode: RateMode | msgspec.UnsetType = msgspec.UNSET
    rate_min_per_s: Rate | msgspec.UnsetType | None = msgspec.UNSET
    rate_max_per_s: Rate | msgspec.UnsetType | None = msgspec.UNSET
    target_p99_ms: TargetP99 | msgspec.UnsetType = msgspec.UNSET
    target_error_rate: TargetErrorRate | msgspec.UnsetType = msgspec.UNSET


class Room(msgspec.Struct, kw_only=True):
    """A stored room: every time resolved to epoch ms."""

    room: str
    event_id: str | None
    mode: Mode
    opens_at_ms: int
    starts_at_ms: int
    closes_at_ms: int  # 0 = never
    rate_per_s: float
    max_active: int
    session_ttl_s: int
    abandon_after_s: int
    pow_difficulty: int
    shop_url: str | None
    paused: bool
    title: str | None = None
    stock_factor: float = 1.0
    stock_reserve_s: int = 60
    rate_mode: RateMode = "fixed"
    rate_min_per_s: float | None = None
    rate_max_per_s: float | None = None
    target_p99_ms: int = DEFAULT_TARGET_P99_MS
    target_error_rate: float = DEFAULT_TARGET_ERROR_RATE


class RoomStats(msgspec.Struct, kw_only=True):
    waiting: int
    active: int
    admitted_total: int
    abandoned_total: int
    finished_total: int
    admit_rate_observed: float
    sold_out: bool
    all_held: bool = False  # the stock admits nobody more while visitors wait (lua/admit_batch.lua)
    tickets_free: int | None = None  # the event's stock as the last tick read it (None: rate only)
    tickets_held: int | None = None
    rate_current_per_s: float  # the rate admission runs at now (the automatic rate's latest step)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


@lru_cache(maxsize=4096)  # a room's starts_at and a session's expiry repeat on every poll
def rfc3339(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=4096)  # every poll checks its room's id again
def _is_room_id(room: str) -> bool:
    return ROOM_ID_RE.match(room) is not None


def check_room_id(room: str) -> str:
    if not _is_room_id(room):
        raise RoomNotFound(f"no room {room[:80]!r}")  # an id we could never have created
    return room


def validate(room: Room) -> Room:
    """Cross-field rules; InvalidInput (422) naming the field."""
    errs = []
    if room.starts_at_ms < room.opens_at_ms:
        errs.append({"field": "$.starts_at", "message": "starts_at must not be before opens_at"})
    if room.closes_at_ms and room.closes_at_ms <= room.starts_at_ms:
        errs.append({"field": "$.closes_at", "message": "closes_at must be after starts_at"})
    errs += _rate_bound_errors(room)
    if errs:
        raise InvalidInput(errs[0]["message"], errors=errs)
    return room


def _rate_bound_errors(room: Room) -> list[dict[str, str]]:
    """An automatic rate needs both bounds, with rate_per_s (where it starts) between them."""
    lo, hi = room.rate_min_per_s, room.rate_max_per_s
    if lo is not None and hi is not None and lo > hi:
        return [{"field": "$.rate_min_per_s", "message": "rate_min_per_s must not be above rate_max_per_s"}]
    if room.rate_mode != "auto":
        return []
    if lo is None or hi is None:
        field = "rate_min_per_s" if lo is None else "rate_max_per_s"
        return [{"field": f"$.{field}", "message": f"rate_mode auto needs {field}"}]
    if not lo <= room.rate_per_s <= hi:
        return [{"field": "$.rate_per_s",
                 "message": "rate_per_s (the starting rate) must lie between rate_min_per_s and rate_max_per_s"}]
    return []


def room_from_config(room_id: str, body: RoomConfig, now_ms: int) -> Room:
    opens = _ms(body.opens_at) if body.opens_at else now_ms
    starts = _ms(body.starts_at) if body.starts_at else opens
    return validate(Room(
        room=room_id, event_id=body.event_id, mode=body.mode, opens_at_ms=opens, starts_at_ms=starts,
        closes_at_ms=_ms(body.closes_at) if body.closes_at else 0, rate_per_s=body.rate_per_s,
        max_active=body.max_active, session_ttl_s=body.session_ttl_s, abandon_after_s=body.abandon_after_s,
        pow_difficulty=body.pow_difficulty, shop_url=body.shop_url, paused=body.paused, title=body.title,
        stock_factor=body.stock_factor, stock_reserve_s=body.stock_reserve_s,
        rate_mode=body.rate_mode, rate_min_per_s=body.rate_min_per_s, rate_max_per_s=body.rate_max_per_s,
        target_p99_ms=body.target_p99_ms, target_error_rate=body.target_error_rate))


def apply_patch(room: Room, patch: RoomPatch) -> Room:
    changes = {}
    for field in RoomPatch.__struct_fields__:
        value = getattr(patch, field)
        if value is msgspec.UNSET or field == "sold_out":
            continue
        if field in ("opens_at", "starts_at", "closes_at"):
            changes[f"{field}_ms"] = _ms(value) if value is not None else 0
        else:
            changes[field] = value
    return validate(msgspec.structs.replace(room, **changes))


def _to_hash(room: Room) -> dict[str, str]:
    return {
        "mode": room.mode, "opens_at": str(room.opens_at_ms), "starts_at": str(room.starts_at_ms),
        "closes_at": str(room.closes_at_ms), "rate": repr(float(room.rate_per_s)),
        "max_active": str(room.max_active), "ttl_ms": str(room.session_ttl_s * 1000),
        "abandon_ms": str(room.abandon_after_s * 1000), "pow": str(room.pow_difficulty),
        "event_id": room.event_id or "", "shop_url": room.shop_url or "", "paused": "1" if room.paused else "0",
        "title": room.title or "", "stock_factor": repr(float(room.stock_factor)),
        "reserve_ms": str(room.stock_reserve_s * 1000),
        **_rate_fields(room),
    }


def _rate_fields(room: Room) -> dict[str, str]:
    """The automatic rate's settings (lua/set_auto_rate.lua). ``rate`` above starts at rate_per_s;
    in auto mode the controller then moves it, and ``rate_start`` keeps the organizer's value."""
    return {
        "rate_mode": room.rate_mode, "rate_start": repr(float(room.rate_per_s)),
        "rate_min": repr(float(room.rate_min_per_s)) if room.rate_min_per_s is not None else "",
        "rate_max": repr(float(room.rate_max_per_s)) if room.rate_max_per_s is not None else "",
        "p99_ms": str(room.target_p99_ms), "err_rate": repr(float(room.target_error_rate)),
    }


def _from_hash(room_id: str, raw: dict[bytes, bytes]) -> Room:
    h = {k.decode(): v.decode() for k, v in raw.items()}
    return Room(
        room=room_id, event_id=h.get("event_id") or None, mode=cast(Mode, h["mode"]),  # written from a Room
        opens_at_ms=int(h["opens_at"]), starts_at_ms=int(h["starts_at"]), closes_at_ms=int(h["closes_at"]),
        rate_per_s=float(h.get("rate_start") or h["rate"]), max_active=int(h["max_active"]),
        session_ttl_s=int(h["ttl_ms"]) // 1000,
        abandon_after_s=int(h["abandon_ms"]) // 1000, pow_difficulty=int(h["pow"]),
        shop_url=h.get("shop_url") or None, paused=h.get("paused") == "1", title=h.get("title") or None,
        stock_factor=float(h.get("stock_factor") or 1.0),
        stock_reserve_s=int(h.get("reserve_ms") or 60_000) // 1000,
        rate_mode="auto" if h.get("rate_mode") == "auto" else "fixed",
        rate_min_per_s=float(h["rate_min"]) if h.get("rate_min") else None,
        rate_max_per_s=float(h["rate_max"]) if h.get("rate_max") else None,
        target_p99_ms=int(h.get("p99_ms") or DEFAULT_TARGET_P99_MS),
        target_error_rate=float(h.get("err_rate") or DEFAULT_TARGET_ERROR_RATE))


async def room_ids(redis: Redis, keys: RedisKeys) -> list[str]:
    """Every room's id, sorted (the rooms index)."""
    return sorted(m.decode() for m in cast(set[bytes], await redis.smembers(keys.rooms_index())))


class RoomStore:
    """Room configs, their event links (``event_room``) and live stats."""

    def __init__(self, calls: RedisCalls, keys: RedisKeys) -> None:
        self._redis = calls.redis
        self._calls = calls
        self._keys = keys

    @property
    def redis(self) -> Redis:
        return self._redis

    @property
    def calls(self) -> RedisCalls:
        return self._calls

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    async def get(self, room_id: str) -> Room | None:
        # bytes throughout: our clients do not decode replies (redis-py types them for either way)
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(self._keys.room_config(room_id)))
        return _from_hash(room_id, raw) if raw else None

    async def require(self, room_id: str) -> Room:
        room = await self.get(check_room_id(room_id))
        if room is None:
            raise RoomNotFound(f"no room {room_id!r}")
        return room

    async def _check_event_free(self, room: Room) -> None:
        if not room.event_id:
            return
        other = cast(bytes | None, await self._redis.get(self._keys.event_room(room.event_id)))
        if other and other.decode() != room.room and await self._redis.exists(self._keys.room_config(other.decode())):
            raise EventAlreadyGated(f"event {room.event_id} is already gated by room {other.decode()!r}",
                                    room=other.decode())

    async def _relink(self, room: Room, old_event_id: str | None) -> None:
        """Point event_room at this room; drop the old event's link when it was ours."""
        if old_event_id and old_event_id != room.event_id:
            key = self._keys.event_room(old_event_id)
            if (cast(bytes | None, await self._redis.get(key)) or b"").decode() == room.room:
                await self._redis.delete(key)
        if room.event_id:
            await self._redis.set(self._keys.event_room(room.event_id), room.room)

    async def put(self, room: Room, now_ms: int) -> bool:
        """Create or replace; True when created. The queue and its state are kept on replace."""
        old = await self.get(room.room)
        await self._check_event_free(room)
        args: list[str | int] = ["put", now_ms]
        for field, value in _to_hash(room).items():
            args += [field, value]
        keys = [self._keys.room_config(room.room), self._keys.room_state(room.room)]
        outcome: str = (await self._calls.script("put_room_config", keys, args))[0].decode()
        await self._redis.sadd(self._keys.rooms_index(), room.room)
        await self._relink(room, old.event_id if old else None)
        return outcome == "created"

    async def patch(self, room_id: str, patch: RoomPatch, now_ms: int) -> Room:
        old = await self.require(room_id)
        room = apply_patch(old, patch)
        await self._check_event_free(room)
        changed = {k: v for k, v in _to_hash(room).items() if v != _to_hash(old).get(k)}
        if changed:
            args: list[str | int] = ["patch", now_ms]
            for field, value in changed.items():
                args += [field, value]
            keys = [self._keys.room_config(room_id), self._keys.room_state(room_id)]
            outcome = (await self._calls.script("put_room_config", keys, args))[0].decode()
            if outcome == "no_room":
                raise RoomNotFound(f"no room {room_id!r}")
            await self._relink(room, old.event_id)
        if patch.sold_out is not msgspec.UNSET:
            await self.set_sold_out(room_id, bool(patch.sold_out), now_ms)
        return room

    async def set_sold_out(self, room_id: str, sold_out: bool, now_ms: int) -> None:
        keys = [self._keys.room_config(room_id), self._keys.room_state(room_id)]
        reply = await self._calls.script("mark_sold_out", keys, ["1" if sold_out else "0", now_ms])
        if reply[0] == b"no_room":
            raise RoomNotFound(f"no room {room_id!r}")

    async def close_cancelled(self, room_id: str, event_id: str, now_ms: int) -> bool:
        """The room's event was cancelled: the room is closed and stays so while it gates that
        event (lua/close_cancelled_room.lua); False when there is no such room or it gates another."""
        keys = [self._keys.room_config(room_id), self._keys.room_state(room_id)]
        reply = await self._calls.script("close_cancelled_room", keys, [event_id, now_ms])
        return bool(reply[0] == b"ok")

    async def delete(self, room_id: str) -> bool:
        room = await self.get(check_room_id(room_id))
        if room is None:
            return False
        k = self._keys
        await self._redis.unlink(k.room_config(room_id), k.room_state(room_id), k.room_waiting(room_id),
                                 k.room_active(room_id), k.room_evicted(room_id), k.room_choosing(room_id))
        await self._redis.srem(k.rooms_index(), room_id)
        await self._relink(msgspec.structs.replace(room, event_id=None), room.event_id)
        return True

    async def room_ids(self) -> list[str]:
        return await room_ids(self._redis, self._keys)

    async def event_ids(self, room_ids: Sequence[str]) -> dict[str, str | None]:
        """The event each room gates (None: none, or the room is gone), one HGET per room."""
        replies = await self._calls.commands(*(("HGET", self._keys.room_config(r), "event_id") for r in room_ids))
        return {r: (v.decode() if isinstance(v, bytes) else v) or None for r, v in zip(room_ids, replies, strict=True)}

    # -- the copy of PostgreSQL's record (rooms/durable.py): PostgreSQL decides, these only write

    async def apply(self, room: Room, version: int, now_ms: int, *, old_event_ids: Sequence[str] = (),
                    sold_out: bool | None = None) -> str:
        """Write the record's config at ``version`` (a stored newer version wins: "stale", nothing
        written), index it, point its event's link at it and drop the links of ``old_event_ids``
        that still name it; ``sold_out`` True/False sets the flag, None leaves it. Idempotent."""
        args: list[str | int] = ["put", now_ms, "ver", version]
        for field, value in _to_hash(room).items():
            args += [field, value]
        keys = [self._keys.room_config(room.room), self._keys.room_state(room.room)]
        outcome: str = (await self._calls.script("put_room_config", keys, args))[0].decode()
        if outcome == "stale":
            return outcome
        await self._redis.sadd(self._keys.rooms_index(), room.room)
        if room.event_id:
            await self.set_link(room.event_id, room.room)
        for event_id in old_event_ids:
            if event_id != room.event_id:
                await self.unlink(event_id, room.room)
        if sold_out is not None:
            await self.set_sold_out(room.room, sold_out, now_ms)
        return outcome

    async def recorded_version(self, room_id: str) -> int | None:
        """The record version of the stored config; None for a room never copied from PostgreSQL."""
        ver = cast(bytes | None, await self._redis.hget(self._keys.room_config(room_id), "ver"))
        return int(ver) if ver else None

    async def evicted_ids(self, room_id: str) -> list[str]:
        members = cast(set[bytes], await self._redis.smembers(self._keys.room_evicted(room_id)))
        return sorted(m.decode() for m in members)

    async def links(self, event_ids: Sequence[str], chunk: int = 500) -> list[str | None]:
        """The room each event's link names (None: no link), in order (one GET per event: no
        MGET across slots, so it works on a Cluster)."""
        out: list[str | None] = []
        for i in range(0, len(event_ids), chunk):
            replies = await self._calls.commands(*(("GET", self._keys.event_room(e)) for e in event_ids[i:i + chunk]))
            out += [r.decode() if isinstance(r, bytes) else None for r in replies]
        return out

    async def set_link(self, event_id: str, room_id: str) -> None:
        """Gate the event by the room (the key every hold script checks)."""
        await self._redis.set(self._keys.event_room(event_id), room_id)

    async def unlink(self, event_id: str, room_id: str) -> None:
        """Ungate the event if its link still names this room."""
        key = self._keys.event_room(event_id)
        if (cast(bytes | None, await self._redis.get(key)) or b"").decode() == room_id:
            await self._redis.delete(key)

    async def drop(self, room_id: str, event_ids: Sequence[str]) -> None:
        """Remove a room PostgreSQL no longer has: its keys, its index entry, its event links."""
        k = self._keys
        await self._redis.unlink(k.room_config(room_id), k.room_state(room_id), k.room_waiting(room_id),
                                 k.room_active(room_id), k.room_evicted(room_id), k.room_choosing(room_id))
        await self._redis.srem(k.rooms_index(), room_id)
        for event_id in event_ids:
            await self.unlink(event_id, room_id)

    async def stats(self, room_id: str, now_ms: int, tau_ms: int) -> RoomStats:
        k = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(k.room_waiting(room_id))
            pipe.zcount(k.room_active(room_id), f"({now_ms}", "+inf")
            pipe.hmget(k.room_state(room_id), "admitted_total", "abandoned_total", "finished_total",
                       "rate_ewma", "rate_ts_ms", "sold_out", "all_held", "stock_free", "stock_held")
            pipe.hget(k.room_config(room_id), "rate")
            waiting, active, st, rate_now = await pipe.execute()
        admitted, abandoned, finished, ewma, ewma_ts, sold_out, all_held, free, held = st
        rate = float(ewma or 0)
        if ewma_ts and now_ms > int(ewma_ts):
            rate *= math.exp(-(now_ms - int(ewma_ts)) / tau_ms)
        return RoomStats(waiting=int(waiting), active=int(active), admitted_total=int(admitted or 0),
                         abandoned_total=int(abandoned or 0), finished_total=int(finished or 0),
                         admit_rate_observed=round(rate, 3), sold_out=sold_out == b"1", all_held=all_held == b"1",
                         tickets_free=int(free) if free else None, tickets_held=int(held) if held else None,
                         rate_current_per_s=float(rate_now or 0))
