"""The admission controller: every ``admission_tick_ms`` it runs one ``admit_batch`` per room.

Replicas need no coordination: each room's token bucket lives in Redis and is refilled and
spent inside the script, so N replicas ticking the same room admit ``rate_per_s`` in total,
never N times it, and ``max_active`` is checked in the same atomic step. The loop is a
background task owned by a cleanup context of the admission app.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from redis.exceptions import RedisError

from admission.auto_rate import AutoRate
from admission.metrics import AdmissionMetrics
from rooms.queue_store import QueueStore, TickResult
from rooms.stock import event_stock
from rooms.store import RoomStore
from stagedoor.settings import Settings
from stagedoor.tasks import stop_task

logger = logging.getLogger(__name__)

ROOMS_REFRESH_S = 1.0  # new rooms are picked up within this
MAX_BACKOFF_S = 5.0


class AdmissionController:
    def __init__(self, settings: Settings, rooms: RoomStore, queue: QueueStore, metrics: AdmissionMetrics,
                 clock: Callable[[], float] = time.time, auto_rate: AutoRate | None = None) -> None:
        self.settings = settings
        self.auto_rate = auto_rate  # None: rate_mode auto rooms admit at their rate_per_s
        self.rooms = rooms
        self.queue = queue
        self.metrics = metrics
        self.clock = clock
        self._room_ids: list[str] = []
        self._event_of: dict[str, str | None] = {}
        self._rooms_read_at = 0.0

    async def tick(self) -> dict[str, TickResult]:
        """One pass over every room; returns what each admit_batch did."""
        now = self.clock()
        if now - self._rooms_read_at >= ROOMS_REFRESH_S:
            self._room_ids = await self.rooms.room_ids()
            self._event_of = await self.rooms.event_ids(self._room_ids) if self._room_ids else {}
            self._rooms_read_at = now
        results: dict[str, TickResult] = {}
        started = time.perf_counter()
        for room in self._room_ids:
            event_id = self._event_of.get(room)
            # the stock first, on the event's slot; then the tick, on the room's (rooms/stock.py)
            stock = await event_stock(self.rooms.calls, self.rooms.keys, event_id) if event_id else None
            now_ms = int(self.clock() * 1000)
            result = await self.queue.admit_tick(room, now_ms,
                                                 max_batch=self.settings.admission_max_batch,
                                                 burst_s=self.settings.admission_burst_s, stock=stock)
            results[room] = result
            self._record(room, result)
            if result.admitted:  # "it is your turn" e-mails for those who left an address (worker sends)
                await self.queue.collect_admitted_emails(room, now_ms, max_batch=self.settings.admission_max_batch,
                                                         list_ttl_s=self.settings.queue_token_ttl_s)
        self.metrics.tick_duration_seconds.observe(time.perf_counter() - started)
        if self.auto_rate is not None:
            await self._control_rates(results)
        return results

    async def _control_rates(self, results: dict[str, TickResult]) -> None:
        """The automatic rate's steps (admission/auto_rate.py), once per control period and room;
        a failure is logged and costs only that room's step, never the admissions."""
        assert self.auto_rate is not None
        for room, result in results.items():
            now_ms = int(self.clock() * 1000)
            if not self.auto_rate.due(room, now_ms):
                continue
            try:
                await self.auto_rate.control(room, now_ms, result)
            except (RedisError, OSError) as exc:
                self.metrics.admission_rate_errors_total.inc()
                logger.warning("admission_rate_step_failed", extra={"room": room, "error": str(exc)})

    def _record(self, room: str, result: TickResult) -> None:
        m = self.metrics
        if result.outcome == "no_room":
            return
        if result.admitted:
            m.admitted_total.labels(room).inc(result.admitted)
        if result.abandoned:
            m.abandoned_total.labels(room).inc(result.abandoned)
            logger.info("visitors_abandoned", extra={"room": room, "count": result.abandoned})
        if result.unheard:
            m.unheard_stops_total.labels(room).inc()
        m.all_held.labels(room).set(result.all_held)
        if result.sessions_expired:
            m.sessions_expired_total.labels(room).inc(result.sessions_expired)
        m.active_shoppers.labels(room).set(result.active)
        m.waiting.labels(room).set(result.waiting)

    async def run(self) -> None:
        interval = self.settings.admission_tick_ms / 1000
        backoff = interval
        # Replicas started together would tick in lock step; a random phase spreads them.
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            started = time.monotonic()
            try:
                await self.tick()
                backoff = interval
            except (RedisError, OSError) as exc:
                self.metrics.tick_errors_total.inc()
                logger.warning("admission_tick_failed", extra={"error": str(exc), "retry_in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            except Exception:  # a bug: keep admitting the other rooms, loudly
                self.metrics.tick_errors_total.inc()
                logger.exception("admission_tick_crashed", extra={"retry_in_s": backoff})
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


def controller_ctx(key: web.AppKey[AdmissionController]) -> Callable[[web.Application], AsyncIterator[None]]:
    """Start the tick loop after the stores exist; cancel it on cleanup."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(app[key].run(), name="admission-controller")
        yield
        await stop_task(task)

    return ctx
