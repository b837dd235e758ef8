"""The waiting room's domain: join a room, read one's status, turn an admission into a token.

Handlers pass the presented queue token (cookie or Bearer) and the clock reading; nothing
here knows HTTP. Room configs are read through a 0.5 s per-process cache (an admin change
still reaches visitors well within the 1 s the contract promises), one read per room at a time
however many requests find it stale; the queue scripts read the authoritative config in Redis
on every call anyway.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Literal, cast

import msgspec
from redis.exceptions import RedisError

from rooms.errors import RoomClosed, RoomNotFound, RoomNotOpen, RoomSoldOut, VisitorEvicted
from rooms.queue_store import BUCKET_MS, QueueStatus, QueueStore, join_result, queue_status
from rooms.store import Room, RoomStore, check_room_id, rfc3339
from stagedoor.admission_tokens import mint_admission_token
from stagedoor.keys import KeyRing
from stagedoor.queue_tokens import (
    InvalidQueueToken,
    QueueTokenClaims,
    keys_from_settings,
    mint_queue_token,
    verify_queue_token,
)
from stagedoor.settings import Settings
from stagedoor.single_flight import SingleFlight
from waitingroom.metrics import WaitingRoomMetrics

State = Literal["pre_queue", "waiting", "admitted", "expired", "sold_out", "closed"]
Reason = Literal["all_held"]
ROOM_CACHE_S = 0.5
TOKEN_CACHE_SIZE = 50_000
VERIFIED_CACHE_SIZE = 50_000  # queue tokens that verified: ~12 MB at most
HEARD_CACHE_SIZE = 100_000  # visitors whose rate-limited heartbeat was recorded this bucket
MIN_OBSERVED_RATE = 0.01  # admissions/s below which the measured rate is "nothing measured yet"

# The miss path (waitingroom/room_restore.py): a room Redis does not know is copied back from
# PostgreSQL, its record; None when PostgreSQL has no such room either.
Restore = Callable[[str], Awaitable[Room | None]]


class PlaceNotLive(Exception):
    """A join with ``live_only`` presented a token whose place is gone (nothing was written)."""


class StatusOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    state: State
    position: int | None
    ahead: int | None
    waiting_total: int
    eta_s: int | None
    starts_at: str | None
    paused: bool = False
    # waiting because every ticket left is held (or being chosen by a shopper): admission goes on
    # as holds end and shoppers finish (docs/admission.md "Admission and the stock")
    reason: Reason | None = None
    admission_token: str | None = None
    admission_expires_at: str | None = None
    shop_url: str | None = None


class JoinOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    visitor_id: str
    queue_token: str
    state: State
    position: int | None
    ahead: int | None
    waiting_total: int
    eta_s: int | None
    starts_at: str | None
    admission_token: str | None = None
    admission_expires_at: str | None = None
    shop_url: str | None = None


class WaitingRoom:
    """The waiting room's collaborators (stores, key ring, clock), built once per app."""

    def __init__(self, settings: Settings, rooms: RoomStore, queue: QueueStore, keyring: KeyRing,
                 metrics: WaitingRoomMetrics, clock: Callable[[], float] = time.time) -> None:
        if not settings.queue_token_secret:
            raise ValueError("the waiting room needs STAGEDOOR_QUEUE_TOKEN_SECRET")
        self.settings = settings
        self.rooms = rooms
        self.queue = queue
        self.keyring = keyring
        self.metrics = metrics
        self.clock = clock
        self._token_keys = keys_from_settings(settings)  # the signing secret and the previous ones
        self._room_cache: dict[str, tuple[float, Room | None]] = {}
        self._room_reads: SingleFlight[str, Room | None] = SingleFlight()
        self._tokens: OrderedDict[tuple[str, str, int], tuple[str, int]] = OrderedDict()
        self._verified: dict[str, QueueTokenClaims] = {}
        self._heard: dict[tuple[str, str], int] = {}  # (room, visitor) -> bucket of a rate-limited heartbeat
        self.restore: Restore | None = None

    # -- rooms
    async def room(self, room_id: str, now: float) -> Room:
        room = self.fresh_room(room_id, now)
        if room is not None:
            return room
        check_room_id(room_id)
        # one read per room at a time: the requests that find it stale share it
        config = await self._room_reads.do(room_id, lambda: self._read_room(room_id, now))
        if config is None:
            raise RoomNotFound(f"no room {room_id!r}")
        return config

    async def _read_room(self, room_id: str, now: float) -> Room | None:
        config = await self.rooms.get(room_id)
        if config is None and self.restore is not None:
            config = await self.restore(room_id)
        if len(self._room_cache) > 10_000:
            self._room_cache.clear()
        self._room_cache[room_id] = (now, config)
        return config

    def fresh_room(self, room_id: str, now: float) -> Room | None:
        """The cached config while it is fresh, without an await (RoomNotFound if the room was
        known not to exist); None when it must be read (call :meth:`room`). Only ids that passed
        ``check_room_id`` are ever cached, so a miss is all an odd id gets here."""
        cached = self._room_cache.get(room_id)
        if cached is None or now - cached[0] > ROOM_CACHE_S:
            return None
        if cached[1] is None:
            raise RoomNotFound(f"no room {room_id!r}")
        return cached[1]

    # -- tokens
    def verify(self, room_id: str, token: str | None, now: float) -> QueueTokenClaims:
        """The token's claims. A poll presents the same token every few seconds, so a token that
        verified once is remembered (by its exact text: a forgery never matches) and only its room
        and age are checked again."""
        now_s = int(now)
        ttl_s = self.settings.queue_token_ttl_s
        hit = self._verified.get(token) if token else None
        if hit is not None and hit.room == room_id and now_s - ttl_s <= hit.issued_at_s <= now_s + 60:
            return hit
        claims = verify_queue_token(self._token_keys, token, room=room_id, now_s=now_s, ttl_s=ttl_s)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        assert token is not None  # verified: a missing token was refused
        self._verified[token] = claims
        return claims

    def _admission(self, room: Room, visitor_id: str, expiry_ms: int, now: float) -> tuple[str, int]:
        key = (room.room, visitor_id, expiry_ms)
        hit = self._tokens.get(key)
        if hit is not None:
            return hit
        ttl_s = max(1, math.ceil(expiry_ms / 1000 - now))
        token, claims = mint_admission_token(self.keyring, visitor_id=visitor_id, room=room.room,
                                             event_id=room.event_id or "", ttl_s=ttl_s, now=now)
        self.metrics.admission_tokens_minted_total.labels(room.room).inc()
        self._tokens[key] = (token, claims.exp)
        if len(self._tokens) > TOKEN_CACHE_SIZE:
            self._tokens.popitem(last=False)
        return token, claims.exp

    # -- operations
    async def join(self, room_id: str, presented: QueueTokenClaims | None, now: float,
                   email: str | None = None, room: Room | None = None,
                   live_only: bool = False) -> tuple[JoinOut, bool]:
        """A place in the queue (or an immediate admission); (result, created). A waiting
        visitor's ``email`` is kept for the "it is your turn" e-mail. ``room``: its config, when
        the caller has just read it (through :meth:`room`). ``live_only``: a presented token
        whose place is gone raises PlaceNotLive instead of taking a new place (the room asks
        proof of work of those)."""
        if room is None or room.room != room_id:
            room = await self.room(room_id, now)
        now_ms = int(now * 1000)
        visitor_id = presented.visitor_id if presented else None
        result = join_result(await self.queue.join_reply(room_id, visitor_id, now_ms,
                                                          burst_s=self.settings.admission_burst_s,
                                                          live_only=live_only))
        if result.outcome == "no_room" and await self._restored(room_id):
            result = join_result(await self.queue.join_reply(room_id, visitor_id, now_ms,
                                                              burst_s=self.settings.admission_burst_s,
                                                              live_only=live_only))
        outcome = result.outcome
        if outcome == "not_live":
            raise PlaceNotLive(room_id)
        label = outcome if not result.created else ("new" if outcome == "waiting" else "admitted")
        self.metrics.joins(room_id, "rejoin" if outcome in ("waiting", "admitted")
                           and not result.created else label).inc()
        if outcome == "no_room":
            self._room_cache.pop(room_id, None)
            raise RoomNotFound(f"no room {room_id!r}")
        if outcome == "evicted":
            raise VisitorEvicted("this visitor was removed from the room")
        if outcome == "closed":
            raise RoomClosed(f"room {room_id!r} is closed")
        if outcome == "sold_out":
            raise RoomSoldOut(f"the event of room {room_id!r} is sold out")
        if outcome == "not_open":
            raise RoomNotOpen(f"room {room_id!r} opens at {rfc3339(room.opens_at_ms)}",
                              opens_at=rfc3339(room.opens_at_ms))
        queue_token = mint_queue_token(self._token_keys, visitor_id=result.visitor_id, room=room_id, now_s=int(now))
        if outcome == "admitted":
            token, exp = self._admission(room, result.visitor_id, result.expiry_ms, now)
            out = JoinOut(visitor_id=result.visitor_id, queue_token=queue_token, state="admitted", position=None,
                          ahead=None, waiting_total=result.waiting_total, eta_s=0,
                          starts_at=rfc3339(room.starts_at_ms), admission_token=token,
                          admission_expires_at=rfc3339(exp * 1000), shop_url=room.shop_url)
            return out, result.created
        if email:
            await self.queue.remember_email(room_id, result.visitor_id, email, self.settings.queue_token_ttl_s)
        pre_queue = now_ms < room.starts_at_ms and room.mode != "passthrough"
        status = QueueStatus("pre_queue" if pre_queue else "waiting", result.position, result.waiting_total, 0, 0.0,
                             room.rate_per_s, room.starts_at_ms, room.paused)
        view = self._view(room, status, now)
        out = JoinOut(visitor_id=result.visitor_id, queue_token=queue_token, state=view.state,
                      position=view.position, ahead=view.ahead, waiting_total=view.waiting_total, eta_s=view.eta_s,
                      starts_at=view.starts_at)
        return out, result.created

    async def status(self, room_id: str, claims: QueueTokenClaims, now: float) -> StatusOut:
        check_room_id(room_id)
        status = queue_status(await self.queue.status_reply(room_id, claims.visitor_id, int(now * 1000)))
        if status.state == "no_room" and await self._restored(room_id):
            status = queue_status(await self.queue.status_reply(room_id, claims.visitor_id, int(now * 1000)))
        if status.state == "no_room":
            raise RoomNotFound(f"no room {room_id!r}")
        if status.state == "evicted":
            raise InvalidQueueToken("this queue place was revoked")
        room = await self.room(room_id, now) if status.state == "admitted" else None
        return self._view(room, status, now, claims.visitor_id)

    async def heartbeat(self, room_id: str, visitor_id: str, now: float) -> None:
        """Record a waiting visitor's heartbeat without answering their status (a poll refused
        by the rate limit): the status script's own write, its answer dropped. Once per visitor
        per heartbeat bucket per process, so a flood of refused polls costs Redis nothing more."""
        now_ms = int(now * 1000)
        bucket = now_ms // BUCKET_MS
        key = (room_id, visitor_id)
        if self._heard.get(key) == bucket:
            return
        if len(self._heard) >= HEARD_CACHE_SIZE:
            self._heard.clear()
        self._heard[key] = bucket
        try:
            await self.queue.status_reply(room_id, visitor_id, now_ms)
        except RedisError:  # the 429 stands: the page retries after it, and is heard then
            self._heard.pop(key, None)

    async def _restored(self, room_id: str) -> bool:
        """Redis answered "no such room": True when PostgreSQL had it and it is back (the caller
        asks Redis once more)."""
        if self.restore is None:
            return False
        room = await self.restore(room_id)
        if room is not None:
            self._room_cache[room_id] = (self.clock(), room)
        return room is not None

    def _view(self, room: Room | None, status: QueueStatus, now: float, visitor_id: str = "") -> StatusOut:
        starts_at = rfc3339(status.starts_at_ms)
        if status.state == "admitted" and room is not None:
            token, exp = self._admission(room, visitor_id, status.expiry_ms, now)
            return StatusOut(state="admitted", position=None, ahead=None, waiting_total=status.waiting_total,
                             eta_s=0, starts_at=starts_at, admission_token=token,
                             admission_expires_at=rfc3339(exp * 1000), shop_url=room.shop_url)
        until_start = max(0.0, status.starts_at_ms / 1000 - now)
        if status.state == "pre_queue":
            return StatusOut(state="pre_queue", position=None, ahead=None, waiting_total=status.waiting_total,
                             eta_s=math.ceil(until_start), starts_at=starts_at, paused=status.paused)
        if status.state == "waiting":
            held = status.all_held and not status.paused
            return StatusOut(state="waiting", position=status.position, ahead=status.position - 1,
                             waiting_total=status.waiting_total, eta_s=None if held else eta_s(status, now),
                             starts_at=starts_at, paused=status.paused, reason="all_held" if held else None)
        # expired, sold_out or closed (or admitted, its room gone): a State, as rooms' script answers
        return StatusOut(state=cast(State, status.state), position=None, ahead=None,
                         waiting_total=status.waiting_total, eta_s=None, starts_at=starts_at)


def eta_s(status: QueueStatus, now: float) -> int | None:
    """Seconds until admission: position over the measured admission rate (a 10 s EWMA kept in
    Redis by the admit ticks); the configured rate only until something was measured; None
    while paused."""
    if status.paused:
        return None
    rate = status.rate_observed if status.rate_observed >= MIN_OBSERVED_RATE else status.rate_configured
    until_start = max(0.0, status.starts_at_ms / 1000 - now)
    return math.ceil(until_start + status.position / rate) if rate > 0 else None
