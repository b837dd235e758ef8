"""The rooms' rebuild loop: Redis gets every room back from PostgreSQL when it lost them.

Each admission process checks, every ``CHECK_EVERY_S``:

- Redis's ``run_id`` (INFO server): a new one means a restart (maybe without persistence, maybe
  from an older snapshot);
- the restore marker (``RedisKeys.rooms_restored``): FLUSHALL keeps the run_id but drops it;

and on either (and at start) copies every room from PostgreSQL into Redis: config, event link,
sold-out flag, evictions (rooms/durable.py); after a new run_id it also makes every event's link
say what PostgreSQL says (an older snapshot may gate an event PostgreSQL no longer gates).
Every ``REPAIR_EVERY_S`` it also applies the changes whose copy into Redis failed after their
commit (the pending notes). A room is back within about one check after Redis lost it; the
waiting room restores a room it misses itself (rooms.durable.RoomRestorer), so a fan's page
does not even wait for this loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from redis.exceptions import RedisError

from admission.appkeys import ADMIN, METRICS
from admission.metrics import AdmissionMetrics
from rooms.durable import DurableRooms, adopt_all
from stagedoor.connections import redis_run_id
from stagedoor.redis_keys import RedisKeys
from stagedoor.tasks import stop_task
from stagedoor.web import KEYS

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 0.5
REPAIR_EVERY_S = 1.0
PENDING_OLDER_THAN_S = 1.0  # an admin write in flight clears its own note well within this


class RoomRebuild:
    def __init__(self, durable: DurableRooms, keys: RedisKeys, metrics: AdmissionMetrics) -> None:
        self.durable = durable
        self.keys = keys
        self.metrics = metrics
        self.redis = durable.rooms.redis
        self.run_id: str | None = None
        self._unfinished = True  # nothing copied yet, or the last copy failed
        self._last_repair = 0.0

    async def check(self) -> bool:
        """One check; True when it rebuilt the rooms."""
        run_id = await redis_run_id(self.redis)
        marker = self.keys.rooms_restored()
        reason = None
        if self.run_id is None:
            reason = "start"
        elif self._unfinished:
            reason = "retry"
        elif run_id != self.run_id:
            reason = "run_id"
        elif not await self.redis.exists(marker):
            reason = "marker"
        self.run_id = run_id
        if reason is not None:
            self._unfinished = True
            if reason in ("start", "retry"):
                await adopt_all(self.durable)  # rooms created before they were recorded
            await self.rebuild(reason, marker)
            self._unfinished = False
        now = time.monotonic()
        if now - self._last_repair >= REPAIR_EVERY_S:
            self._last_repair = now
            repaired = await self.durable.repair_pending(PENDING_OLDER_THAN_S)
            if repaired:
                self.metrics.rooms_repaired_total.inc(repaired)
        return reason is not None

    async def rebuild(self, reason: str, marker: str) -> None:
        token = uuid.uuid4().hex
        started = time.monotonic()
        while True:
            # Marker first: a FLUSHALL during the copy removes it, and the copy runs again.
            await self.redis.set(marker, token)
            count = await self.durable.restore_all()
            if reason == "run_id":  # an older snapshot may hold links PostgreSQL no longer has
                await self.durable.mend_links()
            if await self.redis.get(marker) is not None:
                break
        self.metrics.rooms_rebuilt_total.labels(reason).inc()
        log = logger.info if reason == "start" else logger.warning
        log("rooms_rebuilt", extra={"reason": reason, "rooms": count,
                                    "duration_ms": round((time.monotonic() - started) * 1000)})

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.metrics.rooms_rebuild_errors_total.inc()
                logger.warning("rooms_rebuild_failed", extra={"error": str(exc)[:200]})
            except Exception:  # a bug: logged, and the loop goes on (it must outlive any one check)
                self.metrics.rooms_rebuild_errors_total.inc()
                logger.exception("rooms_rebuild_crashed")
            await asyncio.sleep(CHECK_EVERY_S)


async def room_rebuild_ctx(app: web.Application) -> AsyncIterator[None]:
    """Owns the rebuild loop's task (after ``admission_ctx``, which builds ``app[ADMIN]``)."""
    rebuild = RoomRebuild(app[ADMIN].durable, app[KEYS], app[METRICS])
    task = asyncio.create_task(rebuild.run(), name="admission-room-rebuild")
    yield
    await stop_task(task)
