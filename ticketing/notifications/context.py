"""The worker's notifications: the service object, and the loops it owns (fan-out jobs,
reminder scheduler, "your turn" drain). The bus consumer is wired beside it in
ticketing/worker.py with ``consumer_ctx("notifications", notification_handler)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from stagedoor.bus import consumer_ctx
from stagedoor.logs import log_failure
from stagedoor.tasks import stop_tasks
from stagedoor.web import DB, KEYS, REDIS, SETTINGS
from ticketing.appkeys import METRICS, NOTIFICATIONS
from ticketing.notifications.handlers import notification_handler
from ticketing.notifications.metrics import NotificationMetrics
from ticketing.notifications.reminders import schedule_reminders
from ticketing.notifications.service import Notifications
from ticketing.notifications.your_turn import YourTurnDrain

logger = logging.getLogger(__name__)

JOB_POLL_S = 5.0  # open jobs are looked at this often, and at once when one is recorded
JOB_PASS_BUDGET_S = 20.0


async def _loop(name: str, interval_s: float, step: Callable[[], Awaitable[object]],
                wake: asyncio.Event | None = None) -> None:
    while True:
        try:
            async with asyncio.timeout(max(60.0, interval_s * 10)):
                await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log_failure(logger, "notification_loop_failed", exc, loop=name)
        if wake is None:
            await asyncio.sleep(interval_s)
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await wake.wait()
        wake.clear()


async def notifications_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    n = Notifications(settings, app[DB], NotificationMetrics(app[METRICS].registry))
    app[NOTIFICATIONS] = n
    if not n.email_enabled:
        logger.warning("notification_email_disabled_at_start", extra={"setting": "STAGEDOOR_SMTP_HOST"})
    drain = YourTurnDrain(n, app[REDIS], app[KEYS])

    async def jobs_pass() -> None:
        if await n.run_open_jobs(JOB_PASS_BUDGET_S):
            n.jobs_ready.set()  # a fan-out ran out of its budget: the next pass starts at once

    tasks = [
        asyncio.create_task(_loop("jobs", JOB_POLL_S, jobs_pass, n.jobs_ready), name="notification-jobs"),
        asyncio.create_task(_loop("reminders", settings.reminder_interval_s, lambda: schedule_reminders(n)),
                            name="notification-reminders"),
        asyncio.create_task(_loop("your_turn", settings.your_turn_interval_s, drain.run_once),
                            name="notification-your-turn"),
    ]
    yield
    await stop_tasks(tasks)
    await n.close()


def add_notifications(app: web.Application) -> None:
    """Wire the notifications into the worker: the service and its loops, then the bus consumer."""
    app.cleanup_ctx.append(notifications_ctx)
    app.cleanup_ctx.append(consumer_ctx("notifications", notification_handler))
