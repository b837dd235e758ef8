"""The shop's health as a room's admitted fans see it, shared through Redis: ticketing writes it,
the admission controller's automatic rate (admission/rate_control.py) reads it.

Each hold and purchase request made with a valid admission token is counted in its room's
bucket of the current second (``RedisKeys.room_health``, in the room's own slot): ``n`` requests,
``e`` errors (a 5xx answer or a request that never finished: a fan's own mistakes, the 4xx, are
not the shop's ill health), and a latency histogram ``b0``..``b<k>`` with the fixed upper bounds
``LATENCY_BOUNDS_MS`` (the last bucket has none). Fixed bounds let any number of seconds and
processes be merged by adding counts, and a p99 read from the merged histogram. Each bucket
expires ``BUCKET_TTL_S`` after its last write.

Cost on the hot path: :meth:`ShopHealthRecorder.record` adds to counters in memory (no I/O);
every ``FLUSH_S`` a process with something to write sends it as one pipelined call of HINCRBYs
and an EXPIRE per room and second, sharing the process's round trip (stagedoor/redis_calls.py).
That is at most ``1 / FLUSH_S`` writes per second per process and room, whatever the request
rate: far less than one write per request. A flush that fails is dropped (logged): the counts
are a measurement, not a record, and the controller holds its rate when it has too few of them.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections.abc import Callable

import msgspec

from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys

logger = logging.getLogger(__name__)

LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
OVERFLOW_MS = 2 * LATENCY_BOUNDS_MS[-1]  # the p99 reported when it falls in the unbounded bucket
BUCKET_FIELDS = tuple(f"b{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
FIELDS = ("n", "e", *BUCKET_FIELDS)
FLUSH_S = 0.25
BUCKET_TTL_S = 60
WARN_EVERY_S = 10.0


def bucket_of(latency_ms: float) -> int:
    """The histogram bucket of a latency: the first whose upper bound is not below it."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


class HealthWindow(msgspec.Struct, frozen=True, kw_only=True):
    """Some seconds of a room's shop requests, merged."""

    requests: int
    errors: int
    p99_ms: float  # the upper bound of the bucket holding the 99th percentile (0 without requests)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def window_of(counts: list[int], requests: int, errors: int) -> HealthWindow:
    """A window from merged histogram ``counts`` (one per BUCKET_FIELDS)."""
    total = sum(counts)
    p99 = 0.0
    if total:
        rank = math.ceil(0.99 * total)
        seen = 0
        for i, count in enumerate(counts):
            seen += count
            if seen >= rank:
                p99 = float(LATENCY_BOUNDS_MS[i]) if i < len(LATENCY_BOUNDS_MS) else float(OVERFLOW_MS)
                break
    return HealthWindow(requests=requests, errors=errors, p99_ms=p99)


class ShopHealthRecorder:
    """Ticketing's side: counts in memory, flushed every ``flush_s`` (see the module docstring)."""

    def __init__(self, calls: RedisCalls, keys: RedisKeys, *, clock: Callable[[], float] = time.time,
                 flush_s: float = FLUSH_S, ttl_s: int = BUCKET_TTL_S) -> None:
        self._calls = calls
        self._keys = keys
        self._clock = clock
        self.flush_s = flush_s
        self.ttl_s = ttl_s
        self._pending: dict[tuple[str, int], list[int]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._warned_at = -WARN_EVERY_S

    def record(self, room: str, latency_s: float, failed: bool) -> None:
        """Count one request of ``room``'s admitted fans (no I/O)."""
        key = (room, int(self._clock()))
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = [0] * len(FIELDS)
        counts[0] += 1
        if failed:
            counts[1] += 1
        counts[2 + bucket_of(latency_s * 1000)] += 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_s, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._pending:
            task = asyncio.ensure_future(self.flush())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def flush(self) -> None:
        """Write what was counted so far (one pipelined call)."""
        pending, self._pending = self._pending, {}
        commands: list[tuple[str | int, ...]] = []
        for (room, second), counts in pending.items():
            key = self._keys.room_health(room, second)
            commands += [("HINCRBY", key, field, count) for field, count in zip(FIELDS, counts, strict=True) if count]
            commands.append(("EXPIRE", key, self.ttl_s))
        if not commands:
            return
        try:
            await self._calls.commands(*commands)
        except Exception as exc:  # a measurement: dropped, never the request's failure
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                logger.warning("shop_health_flush_failed", extra={"error": str(exc), "buckets": len(pending)})

    async def aclose(self) -> None:
        """Write what is left (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        await self.flush()


class ShopHealthReader:
    """The admission controller's side: a room's last seconds, merged (one round trip)."""

    def __init__(self, calls: RedisCalls, keys: RedisKeys) -> None:
        self._calls = calls
        self._keys = keys

    async def window(self, room: str, now_s: float, seconds: int) -> HealthWindow:
        """The ``seconds`` complete seconds before ``now_s`` (the current one is still filling)."""
        end = int(now_s)
        replies = await self._calls.commands(
            *(("HMGET", self._keys.room_health(room, s), *FIELDS) for s in range(end - seconds, end)))
        requests = errors = 0
        counts = [0] * len(BUCKET_FIELDS)
        for reply in replies:
            values = [int(v) if v else 0 for v in reply]
            requests += values[0]
            errors += values[1]
            for i, v in enumerate(values[2:]):
                counts[i] += v
        return window_of(counts, requests, errors)
