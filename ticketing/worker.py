"""The background worker: an app with no public API of its own, only /healthz, /readyz,
/metrics, whose cleanup contexts own the background loops: the hold sweeper, the outbox relay,
the bus consumer groups, the waiting-list offers and the notifications.

Waiting lists (ticketing/waitlist/offering.py): tickets that come back to a sold-out event are
offered to its waiting list in order, per event under an advisory lock (any number of workers).

Hold sweeper (ticketing/catalog/hold_sweeper.py): every ``hold_sweep_interval_s`` it
- hands each event's counters to the worker's sell-out watch (ticketing/orders/sold_out.py), which
  marks a sold-out event and tells its room if the ticketing process did not (it died mid-way);
- notices Redis data loss (a new Redis ``run_id``, or a sellable event whose inventory marker
  is gone) and rebuilds those events from PostgreSQL;
- reclaims expired holds of every on-sale event (sweep_expired_holds) and writes one
  BookingExpired outbox row per reclaimed hold (deterministic outbox id: written once);
- refreshes the free/held/sold gauges.
One replica sweeps at a time (a Redis lock with a TTL).

Payments (``gateway_ctx``, ``payments_ctx``, ``reconciler_ctx``, ``gateway_sweep_ctx``): one ``Payments`` over the
configured gateway (``GATEWAY`` if set before startup, else ``payment_gateway`` from the settings,
built and closed by ticketing/payments/configured.py) serves the
cancellation refunds consumer and the payment reconciler (ticketing/orders/reconcile.py: settles
pending/unknown charges older than the payment window, retries failed refunds with backoff). Every
step of the reconciler is a compare-and-set on the payments row, so several workers may run it.
The gateway sweep (ticketing/payments/sweep.py) lists the gateway's payments every
``payment_sweep_interval_s`` and compares them with our records (one worker at a time, by a lease).
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
from stagedoor.web import CALLS, DB, KEYRING, KEYS, SETTINGS, base_app, keyring_ctx
from ticketing.appkeys import (
    CLOCK,
    GATEWAY,
    GATEWAY_SWEEP,
    HOLDS,
    INVENTORY,
    METRICS,
    PAYMENTS,
    RECONCILER,
    SOLD_OUT_WATCH,
    SWEEPER,
)
from ticketing.catalog.hold_sweeper import HoldSweeper
from ticketing.catalog.routes import inventory_ctx
from ticketing.consumers import add_consumers
from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.metrics import TicketingMetrics
from ticketing.notifications.context import add_notifications
from ticketing.orders.idempotency import IdempotencyStore
from ticketing.orders.purchase_deps import PurchaseDeps
from ticketing.orders.reconcile import Reconciler
from ticketing.orders.sold_out import SoldOutWatch
from ticketing.orders.store import OrderStore
from ticketing.payments.charging import Payments
from ticketing.payments.configured import gateway_ctx
from ticketing.payments.records import PaymentRecords
from ticketing.payments.sweep import GatewaySweep
from ticketing.payments.sweep_store import SweepStore
from ticketing.payments.webhook_store import WebhookStore
from ticketing.waitlist.routes import waitlist_worker_ctx

logger = logging.getLogger(__name__)


async def sold_out_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """The worker's sell-out watch (after inventory_ctx): noted by the reconciler's purchases and,
    as the fallback of the ticketing process's own watch, by the hold sweeper's counters."""
    settings, holds = app[SETTINGS], app[HOLDS]
    app[SOLD_OUT_WATCH] = watch = SoldOutWatch(settings.sold_out_check_interval_ms, holds=holds,
                                               orders=OrderStore(app[DB]),
                                               admission=AdmissionHooks(app[CALLS], app[KEYS]))
    task = asyncio.create_task(watch.run(app[CLOCK].now_ms), name="worker-sold-out-watch")
    yield
    await stop_task(task)


async def hold_sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    sweeper = HoldSweeper(app[INVENTORY], app[SETTINGS], app[METRICS], app[CLOCK],
                          on_counts=app[SOLD_OUT_WATCH].consider)
    task = asyncio.create_task(sweeper.run(), name="hold-sweeper")
    app[SWEEPER] = task
    yield
    await stop_task(task)


async def payments_ctx(app: web.Application) -> AsyncIterator[None]:
    """The worker's payments over the configured gateway (refunds consumer and reconciler share it)."""
    app[PAYMENTS] = Payments.from_settings(app[SETTINGS], app[METRICS], app[GATEWAY])  # set by gateway_ctx
    yield
    await app[PAYMENTS].aclose()  # the gateways of earlier charges it built, if any


async def reconciler_ctx(app: web.Application) -> AsyncIterator[None]:
    """The payment reconciler's loop (after payments_ctx, inventory_ctx and keyring_ctx)."""
    settings, holds = app[SETTINGS], app[HOLDS]
    orders = OrderStore(app[DB])
    admission = AdmissionHooks(app[CALLS], app[KEYS])
    deps = PurchaseDeps(
        holds=holds, orders=orders, payments=app[PAYMENTS],
        idempotency=IdempotencyStore(app[CALLS], app[KEYS], settings.idempotency_inflight_ttl_s,
                                     settings.idempotency_ttl_s),
        keyring=app[KEYRING], metrics=app[METRICS], settings=settings, admission=admission,
        sold_out=app[SOLD_OUT_WATCH],
        records=PaymentRecords(app[DB]),
    )
    app[RECONCILER] = reconciler = Reconciler(deps, app[CLOCK])
    loop = asyncio.create_task(reconciler.run(), name="payment-reconciler")
    yield
    await stop_task(loop)


async def gateway_sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    """The gateway sweep's loop (after payments_ctx)."""
    app[GATEWAY_SWEEP] = sweep = GatewaySweep(app[PAYMENTS], SweepStore(app[DB]), WebhookStore(app[DB]),
                                              app[METRICS], app[SETTINGS])
    task = asyncio.create_task(sweep.run(), name="payment-gateway-sweep")
    yield
    await stop_task(task)


def create_worker_app(settings: Settings, keyring: KeyRing | None = None) -> web.Application:
    metrics = TicketingMetrics("worker")
    app = base_app(
        settings, metrics, [],
        title="stagedoor worker",
        description="Background loops: hold sweeper, payment reconciler, waiting-list offers, outbox relay, consumers.",
        keyring=keyring,
    )
    app[METRICS] = metrics
    app.cleanup_ctx.append(keyring_ctx())
    app.cleanup_ctx.append(inventory_ctx)
    app.cleanup_ctx.append(sold_out_watch_ctx)
    app.cleanup_ctx.append(hold_sweeper_ctx)
    app.cleanup_ctx.append(gateway_ctx)
    app.cleanup_ctx.append(payments_ctx)
    app.cleanup_ctx.append(reconciler_ctx)
    app.cleanup_ctx.append(gateway_sweep_ctx)
    BusMetrics.of(app[METRICS])  # exported from the start (ticketing_outbox_lag_seconds, stagedoor_bus_*)
    app.cleanup_ctx.append(waitlist_worker_ctx)  # returned tickets of sold-out events -> their waiting lists
    app.cleanup_ctx.append(relay_ctx)  # outbox -> bus stream (stagedoor/bus.py)
    add_consumers(app)  # read_model, admission, refunds, dashboard (ticketing/consumers.py)
    add_notifications(app)  # e-mail/SMS consumer, fan-out jobs, reminders, your turn (ticketing/notifications/)
    return app
