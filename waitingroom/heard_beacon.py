"""The waiting room's beacon: every process marks every room's current heartbeat bucket as heard,
about once a second, while it can write to Redis (lua/mark_heard.lua, sent by the same client
the fans' joins and polls write their heartbeats with).

Why: a waiting visitor who sends no heartbeat for ``abandon_after_s`` is dropped as a closed tab
(lua/admit_batch.lua), but silence proves nothing when nobody could have been heard: during an
outage of Redis or of the waiting room, every fan's page polls into 503s and no heartbeat is
written. admit_batch therefore judges silence only over buckets that were heard; this beacon
makes "heard" mean "the waiting room could record heartbeats then", so a room whose visitors
have all gone quiet still drops them, and an outage drops nobody.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor.logs import log_failure
from stagedoor.tasks import stop_task
from waitingroom.appkeys import ROOM

logger = logging.getLogger(__name__)

BEACON_EVERY_S = 1.0  # several per 5 s bucket: a late or failed beacon leaves no bucket dark
ROOMS_REFRESH_S = 5.0  # new rooms are marked within this
LOG_EVERY_S = 10.0  # an outage fails every beacon: a line per 10 s per process is enough


async def mark_rooms_heard(app: web.Application) -> None:
    """Run the beacon until cancelled."""
    wr = app[ROOM]
    rooms: list[str] = []
    rooms_read_at = float("-inf")
    logged_at = float("-inf")
    while True:
        try:
            if time.monotonic() - rooms_read_at >= ROOMS_REFRESH_S:
                rooms = await wr.rooms.room_ids()
                rooms_read_at = time.monotonic()
            await wr.queue.mark_heard(rooms, int(wr.clock() * 1000))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if time.monotonic() - logged_at >= LOG_EVERY_S:
                logged_at = time.monotonic()
                log_failure(logger, "heard_beacon_failed", exc)
        await asyncio.sleep(BEACON_EVERY_S)


async def heard_beacon_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(mark_rooms_heard(app), name="waitingroom-heard-beacon")
    yield
    await stop_task(task)


__all__ = ["BEACON_EVERY_S", "heard_beacon_ctx", "mark_rooms_heard"]
