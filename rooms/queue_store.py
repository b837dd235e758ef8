"""The queue of one room in Redis: join, status (heartbeat), admit tick, finish, evict.

The only place that knows the queue's key shapes and script names. Every call reads the
clock once (``now_ms``, passed in) and touches only ``{room:<id>}`` keys, so one room lives
in one Redis Cluster slot.

Abandon detection costs about one bit per visitor per 5 s bucket: a visitor's id carries its
arrival sequence number (``<seq base36>_<suffix>``), and a join or status call sets that bit
in the current bucket's bitmap. The admit tick drops a visitor none of whose last
``ceil(abandon_after_s / 5) + 1`` buckets has the bit, without spending an admission on them,
and only when every complete bucket of that window heard some visitor: a bucket's bitmap
exists only once a fan's join, poll or stream read reached a waiting-room process and was
written, so when no fan at all is heard (an ingress, CDN or waiting-room outage, a Redis
refusing writes) nobody is dropped (lua/admit_batch.lua).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis

from rooms.stock import EventStock
from rooms.store import MAX_ABANDON_AFTER_S
from stagedoor.queue_tokens import visitor_seq
from stagedoor.redis_calls import RedisCalls, ScriptArg
from stagedoor.redis_keys import RedisKeys

BUCKET_MS = 5000
MAX_BUCKETS = -(-MAX_ABANDON_AFTER_S * 1000 // BUCKET_MS) + 1
RATE_TAU_MS = 10_000  # the measured admission rate is an EWMA with a 10 s time constant
MAX_SCAN = 5000  # abandoned visitors dropped per room per tick at most


class JoinResult(msgspec.Struct, frozen=True):
    outcome: str  # waiting admitted no_room evicted closed sold_out not_open not_live
    visitor_id: str
    created: bool
    position: int
    waiting_total: int
    expiry_ms: int


class QueueStatus(msgspec.Struct, frozen=True):
    state: str  # pre_queue waiting admitted expired sold_out closed evicted no_room
    position: int
    waiting_total: int
    expiry_ms: int
    rate_observed: float
    rate_configured: float
    starts_at_ms: int
    paused: bool
    all_held: bool = False  # waiting while the event's stock admits nobody more (lua/admit_batch.lua)


class TickResult(msgspec.Struct, frozen=True):
    outcome: str  # ok idle no_room
    admitted: int
    abandoned: int
    sessions_expired: int
    waiting: int
    active: int
    unheard: int = 0  # 1: stopped at a visitor whose absence could not be judged (lua/admit_batch.lua)
    all_held: int = 0  # 1: the stock bound admitted nobody while visitors wait


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Entropy:
    """os.urandom drawn 4 KiB at a time: every join takes a suffix and a pre-queue score, and a
    getrandom() call each was a visible share of a join's CPU. The bytes are the kernel's CSPRNG
    output all the same; each is handed out once (a forked child starts its own buffer)."""

    SIZE = 4096

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._buf = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        if self._at + n > len(self._buf):
            self._buf, self._at = os.urandom(self.SIZE), 0
        at = self._at
        self._at = at + n
        return self._buf[at:at + n]


_entropy = _Entropy()


def new_suffix() -> str:
    return _entropy.take(3).hex()  # collision avoidance only: queue tokens are signed


def random_score() -> float:
    """Uniform in (0, 1): 53 random bits, never 0 (so it stays below every seq score >= 1)."""
    return ((int.from_bytes(_entropy.take(7), "big") >> 3) | 1) / (1 << 53)


def join_result(reply: Sequence[Any]) -> JoinResult:
    return JoinResult(_s(reply[0]), _s(reply[1]), bool(reply[2]), int(reply[3]), int(reply[4]), int(reply[5]))


def queue_status(reply: Sequence[Any]) -> QueueStatus:
    return QueueStatus(_s(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]), float(reply[4]),
                       float(reply[5]), int(reply[6]), bool(reply[7]), bool(reply[8]))


def active_session_command(keys: RedisKeys, room: str, visitor_id: str) -> tuple[str, str, str]:
    """The one command behind "is this visitor a live shopper?" (ZSCORE of the active set), for
    callers that send it in a pipeline with their own commands; read the reply with
    :func:`session_is_live`."""
    return ("ZSCORE", keys.room_active(room), visitor_id)


def session_is_live(reply: bytes | str | float | None, now_ms: int) -> bool:
    """The active set scores a shopper by session expiry (ms); absent or past = not a shopper."""
    return reply is not None and float(reply) > now_ms


class QueueStore:
    def __init__(self, calls: RedisCalls, keys: RedisKeys) -> None:
        self._redis = calls.redis
        self._calls = calls
        self._keys = keys
        # new visitors' joins and the status polls of one loop turn leave per room as one
        # join_many / status_many call
        self._new_joins = calls.batch_per_turn(self._send_new_joins)
        self._statuses = calls.batch_per_turn(self._send_statuses)
        self._room_keys_cache: dict[str, tuple[str, ...]] = {}
        self._seen_keys: dict[str, tuple[int, str]] = {}  # room -> (bucket, its seen key)

    def _room_keys(self, room: str) -> tuple[str, ...]:
        """The five keys every per-visitor script of ``room`` takes, built once per room (a join or
        a status poll would otherwise format them anew each time)."""
        keys = self._room_keys_cache.get(room)
        if keys is None:
            if len(self._room_keys_cache) >= 10_000:
                self._room_keys_cache.clear()
            k = self._keys
            keys = self._room_keys_cache[room] = (k.room_config(room), k.room_state(room), k.room_waiting(room),
                                                  k.room_active(room), k.room_evicted(room))
        return keys

    def _seen(self, room: str, now_ms: int, back: int = 0) -> str:
        return self._keys.room_seen(room, now_ms // BUCKET_MS - back)

    def _current_seen(self, room: str, now_ms: int) -> str:
        """``_seen(room, now_ms)``, kept per room while its time bucket lasts."""
        bucket = now_ms // BUCKET_MS
        hit = self._seen_keys.get(room)
        if hit is not None and hit[0] == bucket:
            return hit[1]
        if len(self._seen_keys) >= 10_000:
            self._seen_keys.clear()
        key = self._keys.room_seen(room, bucket)
        self._seen_keys[room] = (bucket, key)
        return key

    async def join(self, room: str, visitor_id: str | None, now_ms: int, *, burst_s: float,
                   score: float | None = None, suffix: str | None = None, live_only: bool = False) -> JoinResult:
        return join_result(await self.join_reply(room, visitor_id, now_ms, burst_s=burst_s, score=score,
                                                 suffix=suffix, live_only=live_only))

    def join_reply(self, room: str, visitor_id: str | None, now_ms: int, *, burst_s: float,
                   score: float | None = None, suffix: str | None = None, live_only: bool = False) -> Awaitable[Any]:
        """The raw reply of lua/join_queue.lua (read it with :func:`join_result`). Not a coroutine:
        the hot path awaits the future itself, one frame less per join. A new visitor's join
        (``visitor_id`` None) is batched with the room's other new visitors of this loop turn
        into one lua/join_many.lua call, whose rows are join_queue.lua's replies. ``live_only``:
        a visitor whose place is gone gets outcome "not_live" and no new place."""
        rand = repr(score if score is not None else random_score())
        if not visitor_id:
            return self._new_joins.submit((room, burst_s), now_ms, rand, suffix or new_suffix())
        return self._calls.script(
            "join_queue", (*self._room_keys(room), self._current_seen(room, now_ms), self._keys.room_choosing(room)),
            [visitor_id, str(visitor_seq(visitor_id)), now_ms, rand, BUCKET_MS, burst_s, suffix or new_suffix(),
             RATE_TAU_MS, "1" if live_only else ""])

    def _send_new_joins(self, key: tuple[str, float], now_ms: int, args: list[ScriptArg]) -> Awaitable[Any]:
        room, burst_s = key
        return self._calls.script("join_many", (*self._room_keys(room), self._current_seen(room, now_ms),
                                                self._keys.room_choosing(room)),
                                  [now_ms, BUCKET_MS, burst_s, RATE_TAU_MS, *args])

    def _send_statuses(self, room: str, now_ms: int, args: list[ScriptArg]) -> Awaitable[Any]:
        return self._calls.script("status_many", (*self._room_keys(room), self._current_seen(room, now_ms)),
                                  [now_ms, BUCKET_MS, RATE_TAU_MS, *args])

    async def status(self, room: str, visitor_id: str, now_ms: int) -> QueueStatus:
        return queue_status(await self.status_reply(room, visitor_id, now_ms))

    def status_reply(self, room: str, visitor_id: str, now_ms: int) -> Awaitable[Any]:
        """This visitor's row of the lua/status_many.lua call that answers all this room's polls
        of this loop turn (read it with :func:`queue_status`)."""
        return self._statuses.submit(room, now_ms, visitor_id, visitor_seq(visitor_id))

    async def admit_tick(self, room: str, now_ms: int, *, max_batch: int, burst_s: float,
                         stock: EventStock | None = None) -> TickResult:
        """One admission tick; ``stock``: the room's event's stock (rooms/stock.py), None to
        admit by rate only (no event linked, or its inventory not loaded)."""
        k = self._keys
        keys = [k.room_config(room), k.room_state(room), k.room_waiting(room), k.room_active(room),
                k.room_choosing(room)]
        keys += [self._seen(room, now_ms, back) for back in range(MAX_BUCKETS)]
        free, held = ("", "") if stock is None else (stock.admissible, stock.held)
        reply = await self._calls.script("admit_batch", keys,
                                         [now_ms, max_batch, MAX_SCAN, RATE_TAU_MS, burst_s, BUCKET_MS, free, held])
        return TickResult(_s(reply[0]), *(int(x) for x in reply[1:]))

    async def finish(self, room: str, visitor_id: str, now_ms: int) -> bool:
        k = self._keys
        return bool(await self._calls.script("finish_session", [k.room_active(room), k.room_state(room),
                                                                k.room_choosing(room)],
                                             [visitor_id, now_ms]))

    async def evict(self, room: str, visitor_id: str) -> tuple[str, bool, bool]:
        k = self._keys
        reply = await self._calls.script(
            "evict_visitor", [k.room_config(room), k.room_waiting(room), k.room_active(room), k.room_evicted(room),
                              k.room_choosing(room)],
            [visitor_id])
        return _s(reply[0]), bool(reply[1]), bool(reply[2])

    async def evict_many(self, room: str, visitor_ids: Sequence[str], chunk: int = 500) -> None:
        """Apply evictions recorded in PostgreSQL (a rebuild): each leaves the queue and the shop
        and stays refused. The room must exist in Redis (written first)."""
        k = self._keys
        keys = [k.room_config(room), k.room_waiting(room), k.room_active(room), k.room_evicted(room),
                k.room_choosing(room)]
        for i in range(0, len(visitor_ids), chunk):
            await self._calls.script("evict_visitor", keys, list(visitor_ids[i:i + chunk]))

    async def remember_email(self, room: str, visitor_id: str, email: str, ttl_s: int) -> None:
        """Keep the address a waiting visitor left for the "your turn" e-mail, as long as a
        queue token lives (the hash's TTL is refreshed by every write)."""
        key = self._keys.room_emails(room)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, visitor_id, email)
            pipe.expire(key, ttl_s)
            await pipe.execute()

    async def collect_admitted_emails(self, room: str, now_ms: int, *, max_batch: int, list_ttl_s: int) -> int:
        """After ``admit_tick(room, now_ms)``: queue the addresses of the visitors it admitted for
        the notifier and forget them here; returns how many."""
        k = self._keys
        return int(await self._calls.script(
            "collect_admitted_emails",
            [k.room_config(room), k.room_active(room), k.room_emails(room), k.room_your_turn(room)],
            [now_ms, max_batch, list_ttl_s * 1000]))

    async def waiting_lengths(self, rooms: Sequence[str]) -> list[int]:
        """How many visitors wait in each room, in order, in one round trip."""
        if not rooms:
            return []
        return [int(n) for n in await self._calls.commands(*(("ZCARD", self._keys.room_waiting(r)) for r in rooms))]

    async def is_active(self, room: str, visitor_id: str, now_ms: int) -> bool:
        reply = await self._redis.execute_command(*active_session_command(self._keys, room, visitor_id))
        return session_is_live(reply, now_ms)


PULSE_ROOM_FIELDS = ("mode", "paused", "starts_at", "closes_at", "abandon_ms")
ZMSCORE_CHUNK = 1000  # visitors per ZMSCORE (one pipeline per pulse all the same)


async def pulse_snapshot(redis: Redis, keys: RedisKeys, room: str,
                         visitors: Sequence[str]) -> tuple[tuple[Any, ...], list[float | None]]:
    """What a waiting-room pulse compares (waitingroom/sse_pulse.py), in one pipeline: the room's
    fields that change every visitor's status (mode, paused, start, close, abandon window, sold
    out, all held), and each visitor's shopper-session expiry in the room's active set (None: not admitted)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.room_config(room), *PULSE_ROOM_FIELDS)
        pipe.hmget(keys.room_state(room), "sold_out", "all_held")
        for at in range(0, len(visitors), ZMSCORE_CHUNK):
            pipe.zmscore(keys.room_active(room), list(visitors[at:at + ZMSCORE_CHUNK]))
        replies = await pipe.execute()
    return (*replies[0], *replies[1]), [score for reply in replies[2:] for score in reply]
