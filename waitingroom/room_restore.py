"""The waiting room's miss path: a room Redis lost is copied back from PostgreSQL on the spot.

After Redis lost its data, the first page load, join or status poll of a recorded room restores
it (config, event link, sold-out flag, evictions) instead of answering 404; the admission
service's rebuild loop would bring it back within a second anyway, this makes it at once.
PostgreSQL is optional here: the pool opens no connection until a miss needs one and is not part
of /readyz (the queue keeps serving while PostgreSQL is down). Unknown ids are refused from a
set of recorded ids read at most every 2 s (rooms.durable.RoomRestorer), so random ids cannot
turn 404s into PostgreSQL load.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from rooms.durable import DurableRooms, RoomRestorer
from rooms.queue_store import QueueStore
from rooms.record_store import RoomRecords
from rooms.store import Room, RoomStore
from stagedoor.connections import make_pool
from stagedoor.errors import DependencyUnavailable
from stagedoor.web import CALLS, KEYS, SETTINGS
from waitingroom.appkeys import ROOM

logger = logging.getLogger(__name__)

POOL_MAX = 2
CONNECT_TIMEOUT_S = 2.0  # a miss while PostgreSQL is down answers 503 soon, not after the usual wait


class MissRestore:
    """``WaitingRoom.restore``: the room restored from PostgreSQL, None when it has no such room;
    503 (retry) when PostgreSQL cannot be asked (a recorded room must not look deleted)."""

    def __init__(self, restorer: RoomRestorer) -> None:
        self.restorer = restorer

    async def __call__(self, room_id: str) -> Room | None:
        try:
            return await self.restorer.restore(room_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.warning("room_restore_failed", extra={"room": room_id, "error": str(exc)[:200]})
            raise DependencyUnavailable("the waiting room cannot be read right now; try again in a moment",
                                        retry_after_s=2) from None


async def room_restore_ctx(app: web.Application) -> AsyncIterator[None]:
    """After ``waiting_room_ctx``: gives ``app[ROOM]`` its miss path when a database is configured."""
    settings = app[SETTINGS]
    if not settings.database_url:
        yield
        return
    pool = await make_pool(settings, min_size=0, max_size=POOL_MAX, timeout=CONNECT_TIMEOUT_S)
    durable = DurableRooms(RoomRecords(pool), RoomStore(app[CALLS], app[KEYS]), QueueStore(app[CALLS], app[KEYS]))
    app[ROOM].restore = MissRestore(RoomRestorer(durable))
    yield
    app[ROOM].restore = None
    await pool.close()
