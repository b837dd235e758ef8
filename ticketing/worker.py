"""The background worker: an app with no public API of its own, only /healthz, /readyz,
/metrics, whose cleanup contexts own the background loops: the hold sweeper, the outbox relay,
the bus consumer groups and the notifications.

Hold sweeper (ticketing/catalog/hold_sweeper.py): every ``hold_sweep_interval_s`` it
- notices Redis data loss (a new Redis ``run_id``, or a sellable event whose inventory marker
  is gone) and rebuilds those events from PostgreSQL;
- reclaims expired holds of every on-sale event (sweep_expired_holds) and writes one
  BookingExpired outbox row per reclaimed hold (deterministic outbox id: written once);
- refreshes the free/held/sold gauges.
One replica sweeps at a time (a Redis lock with a TTL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor.bus import relay_ctx
from stagedoor.bus_metrics import BusMetrics
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings
from stagedoor.tasks import stop_task
from stagedoor.web import SETTINGS, base_app, keyring_ctx
from ticketing.appkeys import CLOCK, INVENTORY, METRICS, SWEEPER
from ticketing.catalog.hold_sweeper import HoldSweeper
from ticketing.catalog.routes import inventory_ctx
from ticketing.consumers import add_consumers
from ticketing.metrics import TicketingMetrics
from ticketing.notifications.context import add_notifications

logger = logging.getLogger(__name__)


async def hold_sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    sweeper = HoldSweeper(app[INVENTORY], app[SETTINGS], app[METRICS], app[CLOCK])
    task = asyncio.create_task(sweeper.run(), name="hold-sweeper")
    app[SWEEPER] = task
    yield
    await stop_task(task)


def create_worker_app(settings: Settings, keyring: KeyRing | None = None) -> web.Application:
    metrics = TicketingMetrics("worker")
    app = base_app(
        settings, metrics, [],
        title="stagedoor worker",
        description="Background loops: hold sweeper, outbox relay, consumers.",
        keyring=keyring,
    )
    app[METRICS] = metrics
    app.cleanup_ctx.append(keyring_ctx())
    app.cleanup_ctx.append(inventory_ctx)
    app.cleanup_ctx.append(hold_sweeper_ctx)
    BusMetrics.of(app[METRICS])  # exported from the start (ticketing_outbox_lag_seconds, stagedoor_bus_*)
    app.cleanup_ctx.append(relay_ctx)  # outbox -> bus stream (stagedoor/bus.py)
    add_consumers(app)  # read_model, admission, refunds, dashboard (ticketing/consumers.py)
    add_notifications(app)  # e-mail/SMS consumer, fan-out jobs, reminders, your turn (ticketing/notifications/)
    return app
