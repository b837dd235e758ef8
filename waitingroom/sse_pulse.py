"""What wakes the open event streams of a room: one Redis round trip per room and pulse.

Each open stream (``GET /api/rooms/{room}/events``) used to read its visitor's whole status
every half second, whether anything had changed or not: an idle stream cost about 68 us of
server CPU per second, so 100,000 fans with the queue page open would have kept seven cores and
all of Redis busy answering "still waiting".

Now a stream reads its status when something may have changed for it, and otherwise only now
and then (its position, which moves steadily: see ``routes.next_check_s``). Per process and
room, one pulse every ``SSE_ROOM_PULSE_S`` reads, in one pipeline on the room's slot:

- the room's state (mode, paused, start, close, abandon time, sold out; a deleted room reads
  as no mode), two O(1) reads:
  when it changed, every stream of the room is woken (sold out and closed reach everyone
  within ``SSE_ROOM_PULSE_S`` plus one status read: the sold-out budget of 1 s,
  docs/waiting-room.md);
- every ``SSE_PULSE_S`` (every other pulse), also ``ZMSCORE`` of the room's active set for the
  visitors of this process's streams, the one read that grows with the streams: a visitor with
  a live session was admitted, and only that stream is woken (admission reaches the fan within
  ``SSE_PULSE_S``, however far back they were).

A pulse that fails (Redis unreachable) wakes nobody; the streams' own reads then meet the
outage and end (the page polls), as before. So the pulse only makes streams faster to notice;
what they show always comes from their own status read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from rooms.queue_store import pulse_snapshot
from stagedoor.redis_keys import RedisKeys
from stagedoor.tasks import stop_task
from waitingroom.metrics import WaitingRoomMetrics

logger = logging.getLogger(__name__)

SSE_PULSE_S = 0.5  # admission reaches an open stream within this
SSE_ROOM_PULSE_S = 0.25  # room changes (sold out, closed, paused, ...) reach an open stream within this
WARN_EVERY_S = 10.0


class Watch:
    """One open stream's wake-up call: ``wake`` is set when its status may have changed."""

    __slots__ = ("visitor_id", "wake")

    def __init__(self, visitor_id: str) -> None:
        self.visitor_id = visitor_id
        self.wake = asyncio.Event()


class _Room:
    __slots__ = ("fresh", "state", "task", "watches")

    def __init__(self) -> None:
        self.watches: dict[str, set[Watch]] = {}
        self.fresh: set[Watch] = set()  # registered since the last pulse
        self.state: tuple[Any, ...] | None = None
        self.task: asyncio.Task[None] | None = None


class RoomPulses:
    """The pulses of one process: started with a room's first open stream, stopped with its last."""

    def __init__(self, redis: Any, keys: RedisKeys, clock_ms: Callable[[], int] | None = None,
                 period_s: float = SSE_ROOM_PULSE_S, metrics: WaitingRoomMetrics | None = None,
                 admitted_every: int = round(SSE_PULSE_S / SSE_ROOM_PULSE_S)) -> None:
        self._redis = redis
        self._metrics = metrics
        self._keys = keys
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.period_s = period_s
        self.admitted_every = max(1, admitted_every)  # pulses per look at the active set
        self._rooms: dict[str, _Room] = {}
        self._warned_at = float("-inf")
        self._stopped = False

    @contextlib.contextmanager
    def watch(self, room: str, visitor_id: str) -> Iterator[Watch]:
        """Register an open stream for as long as the block runs."""
        watch = Watch(visitor_id)
        if self._stopped:
            watch.wake.set()
            yield watch
            return
        entry = self._rooms.get(room)
        if entry is None:
            entry = self._rooms[room] = _Room()
        entry.watches.setdefault(visitor_id, set()).add(watch)
        entry.fresh.add(watch)
        if entry.task is None:
            entry.task = asyncio.ensure_future(self._run(room, entry))
        try:
            yield watch
        finally:
            entry.fresh.discard(watch)
            same = entry.watches.get(visitor_id)
            if same is not None:
                same.discard(watch)
                if not same:
                    del entry.watches[visitor_id]
            if not entry.watches and self._rooms.get(room) is entry:
                del self._rooms[room]
                if entry.task is not None:
                    entry.task.cancel()

    def streams(self, room: str) -> int:
        entry = self._rooms.get(room)
        return sum(len(w) for w in entry.watches.values()) if entry else 0

    async def stop(self) -> None:
        """Shutdown: wake every stream (each then sees the service stopping) and end the pulses."""
        self._stopped = True
        rooms, self._rooms = self._rooms, {}
        for entry in rooms.values():
            for watches in entry.watches.values():
                for watch in watches:
                    watch.wake.set()
        for entry in rooms.values():
            if entry.task is not None:
                await stop_task(entry.task)

    async def _run(self, room: str, entry: _Room) -> None:
        n = 0
        while entry.watches:
            await asyncio.sleep(self.period_s)
            n += 1
            try:
                await self.pulse(room, entry, admitted=n % self.admitted_every == 0)
            except Exception as exc:  # a pulse only hurries streams: it is never fatal
                # (Redis unreachable: the streams' own reads meet the outage and end)
                if self._metrics is not None:
                    self._metrics.sse_pulse_failures_total.inc()
                now = time.monotonic()
                if now - self._warned_at >= WARN_EVERY_S:
                    self._warned_at = now
                    logger.warning("sse_pulse_failed", extra={"room": room, "error": str(exc)})

    async def pulse(self, room: str, entry: _Room | None = None, *, admitted: bool = True) -> int:
        """One pulse of ``room``: wake the streams whose status may have changed; how many woke.
        ``admitted`` False: the room's state only, not the visitors' sessions."""
        entry = entry or self._rooms.get(room)
        if entry is None or not entry.watches:
            return 0
        visitors = list(entry.watches) if admitted else []
        state, scores = await pulse_snapshot(self._redis, self._keys, room, visitors)
        changed, entry.state = entry.state is not None and state != entry.state, state
        if changed:
            woken = 0
            for watches in entry.watches.values():
                for watch in watches:
                    watch.wake.set()
                    woken += 1
            entry.fresh.clear()
            self._count("room_changed", woken)
            return woken
        # A stream read its first status before it registered, and this pulse may be the room's
        # first (no earlier state to compare): it reads once more after this pulse, so nothing
        # that changed in between waits for its own timer.
        registered = len(entry.fresh)
        for watch in entry.fresh:
            watch.wake.set()
        entry.fresh.clear()
        self._count("registered", registered)
        woken_admitted = 0
        now_ms = self._clock_ms()
        for visitor, score in zip(visitors, scores, strict=True):
            if score is not None and float(score) > now_ms:  # a live session: admitted
                for watch in entry.watches.get(visitor, ()):
                    watch.wake.set()
                    woken_admitted += 1
        self._count("admitted", woken_admitted)
        return registered + woken_admitted

    def _count(self, reason: str, woken: int) -> None:
        if woken and self._metrics is not None:
            self._metrics.sse_wakeups_total.labels(reason).inc(woken)
