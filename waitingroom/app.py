"""The waiting room app factory: the only way to build the app, tests included."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.exceptions import RedisError

from rooms.queue_store import QueueStore
from rooms.store import RoomStore
from stagedoor.hot_http import add_hot_routes
from stagedoor.keys import KeyRing
from stagedoor.payment_pages import no_real_money_notice
from stagedoor.settings import TEMPLATES_DIR, Settings, require
from stagedoor.tasks import stop_task
from stagedoor.web import CALLS, KEYRING, KEYS, REDIS, SETTINGS, add_static, base_app, keyring_ctx
from waitingroom.appkeys import METRICS, PAGES, PULSES, ROOM, SSE_STOP
from waitingroom.metrics import WaitingRoomMetrics
from waitingroom.pages import QueuePages
from waitingroom.queue import WaitingRoom
from waitingroom.room_restore import room_restore_ctx
from waitingroom.routes import HOT_HANDLERS, api
from waitingroom.sse_pulse import RoomPulses

logger = logging.getLogger(__name__)

QUEUE_GAUGE_EVERY_S = 2.0


async def waiting_room_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    require(settings, "queue_token_secret")
    rooms = RoomStore(app[CALLS], app[KEYS])
    queue = QueueStore(app[CALLS], app[KEYS])
    app[ROOM] = wr = WaitingRoom(settings, rooms, queue, app[KEYRING], app[METRICS])
    app[PAGES] = QueuePages(auto_reload=settings.environment == "development",
                            test_mode=no_real_money_notice(settings))
    app[PULSES] = pulses = RoomPulses(app[REDIS], app[KEYS], clock_ms=lambda: int(wr.clock() * 1000),
                                      metrics=app[METRICS])
    yield
    await pulses.stop()


async def _refresh_queue_gauge(app: web.Application) -> None:
    metrics = app[METRICS]
    rooms_store, queue = RoomStore(app[CALLS], app[KEYS]), QueueStore(app[CALLS], app[KEYS])
    while True:
        try:
            rooms = await rooms_store.room_ids()
            lengths = await queue.waiting_lengths(rooms)
            for room, length in zip(rooms, lengths, strict=True):
                metrics.queue_length.labels(room).set(length)
        except (RedisError, OSError) as exc:
            logger.warning("queue_gauge_refresh_failed", extra={"error": str(exc)})
        await asyncio.sleep(QUEUE_GAUGE_EVERY_S)


async def queue_gauge_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_refresh_queue_gauge(app), name="waitingroom-queue-gauge")
    yield
    await stop_task(task)


async def _end_sse_streams(app: web.Application) -> None:
    app[SSE_STOP].set()
    pulses = app.get(PULSES)
    if pulses is not None:
        await pulses.stop()  # wakes every open stream, which then sees SSE_STOP


def create_app(settings: Settings, keyring: KeyRing | None = None) -> web.Application:
    metrics = WaitingRoomMetrics()
    app = base_app(
        settings, metrics, [api],
        title="stagedoor waiting room",
        description="Fans join a fair queue and are admitted to the shop at a controlled rate.",
        uses_db=False, keyring=keyring,
    )
    app[METRICS] = metrics
    app.cleanup_ctx.append(keyring_ctx())
    app.cleanup_ctx.append(waiting_room_ctx)
    app.cleanup_ctx.append(room_restore_ctx)  # a room Redis lost comes back from PostgreSQL
    app.cleanup_ctx.append(queue_gauge_ctx)
    app[SSE_STOP] = asyncio.Event()
    app.on_shutdown.append(_end_sse_streams)
    add_static(app, "/static", TEMPLATES_DIR / "static")  # queue.js, pow.js for the queue page
    add_hot_routes(app, HOT_HANDLERS, settings.max_body_bytes)  # status and join, also served by HotSite
    return app
