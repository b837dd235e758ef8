"""The worker's event-bus consumer groups (stagedoor/bus.py; docs/event-bus.md), one handler each from its domain:

- group ``read_model``: the event search's availability read model (migration 0005):
  per-tier capacity and tickets sold, and per event ``tickets_left`` and the price range of
  what is left, from EventCreated/EventUpdated/EventPublished/EventCancelled/SoldOut (rows
  built) and OrderConfirmed (+ tickets) / OrderRefunded (- tickets). Each delivery's effect is
  exactly-once: ``bus_applied`` (group, event id) is inserted in the same transaction.
  "Available" means not sold: holds are short-lived Redis state (HoldPlaced is best-effort), so
  BookingExpired changes nothing here and is not subscribed.
- group ``admission``: SoldOut stops the event's waiting room (rooms.sessions.mark_sold_out,
  idempotent; the purchase path already calls it at once, the bus is the durable fallback);
  ShopperFinished ends the shopper session (rooms.sessions.finish_shopper, idempotent; same).
- group ``refunds``: EventCancelled refunds every confirmed order of the event
  (ticketing.orders.refunds.refund_event_orders: each order once; an order the gateway would
  not refund makes the delivery fail, so it is retried with backoff and dead-lettered after
  ``bus_max_attempts``), through the worker's configured gateway (``ticketing.appkeys.PAYMENTS``,
  built by ticketing.worker.payments_ctx), the same one the payment reconciler uses.
- group ``dashboard``: the organizer dashboard's per-event, per-minute/hour/day counters
  (ticketing/sales/counters.py: orders, tickets, revenue, refunds, failed payments, expired
  holds, check-ins; exactly-once through ``bus_applied`` in the same statement). Beside its
  consumer, the worker runs the one-time backfill of the counters from the outbox in the
  background (``dashboard_backfill_ctx``; a no-op once done).
- group ``waitlist``: BookingExpired, OrderRefunded and EventCancelled note the event for the
  waiting-list offering loop (ticketing/waitlist/offering.py), which offers tickets that came
  back to a sold-out event to its waiting list, or closes the list of a cancelled event.
- group ``payment_webhooks``: PaymentWebhookReceived (the gateway's webhooks as the ticketing service
  stored them) applied to the charge attempts, payments, orders and payment flags
  (ticketing/payments/webhook_effects.py: every effect a compare-and-set or an insert-once, so a
  delivery applied twice changes nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from stagedoor.bus import consumer_ctx
from stagedoor.bus_envelope import Handler
from stagedoor.tasks import stop_task
from stagedoor.web import CALLS, DB, KEYS, SETTINGS
from ticketing.appkeys import GATEWAY, METRICS, PAYMENTS, WAITLIST_OFFERING
from ticketing.catalog.read_model import ReadModel
from ticketing.holds.shopper_session import AdmissionHooks, AdmissionSignals
from ticketing.orders.refunds import CancellationRefunds
from ticketing.orders.store import OrderStore
from ticketing.payments.charging import Payments
from ticketing.payments.records import PaymentRecords
from ticketing.payments.webhook_effects import PaymentWebhooks
from ticketing.payments.webhook_store import WebhookStore
from ticketing.sales.counters import DashboardCounters, backfill_until_done
from ticketing.waitlist.offering import WaitlistSignals

logger = logging.getLogger(__name__)

def _read_model(app: web.Application) -> Handler:
    return ReadModel(app[DB])


def _admission(app: web.Application) -> Handler:
    return AdmissionSignals(AdmissionHooks(app[CALLS], app[KEYS]))


def _refunds(app: web.Application) -> Handler:
    payments = app.get(PAYMENTS)  # the worker's (ticketing.worker.payments_ctx): the configured gateway
    if payments is None:  # another app running the handler: its own over the same configured gateway
        payments = Payments.from_settings(app[SETTINGS], app[METRICS], app.get(GATEWAY))
    return CancellationRefunds(OrderStore(app[DB]), payments)


def _dashboard(app: web.Application) -> Handler:
    return DashboardCounters(app[DB])


def _payment_webhooks(app: web.Application) -> Handler:
    return PaymentWebhooks(WebhookStore(app[DB]), PaymentRecords(app[DB]), app[METRICS])


def _waitlist(app: web.Application) -> Handler:
    return WaitlistSignals(app[WAITLIST_OFFERING])  # the worker's (ticketing.waitlist.routes.waitlist_worker_ctx)


CONSUMER_FACTORIES: dict[str, Callable[[web.Application], Handler]] = {
    "read_model": _read_model, "admission": _admission, "refunds": _refunds, "dashboard": _dashboard,
    "payment_webhooks": _payment_webhooks, "waitlist": _waitlist}


async def dashboard_backfill_ctx(app: web.Application) -> AsyncIterator[None]:
    """Counts what the outbox holds from before the ``dashboard`` group existed, once per database,
    in a background task (ticketing/sales/counters.py explains why it may run before, during
    or after the group's consumer without counting anything twice)."""
    task = asyncio.create_task(backfill_until_done(app[DB]), name="dashboard-backfill")
    yield
    await stop_task(task)


def add_consumers(app: web.Application) -> None:
    """The worker's consumer groups, one cleanup context each."""
    app.cleanup_ctx.append(dashboard_backfill_ctx)
    for group, factory in CONSUMER_FACTORIES.items():
        app.cleanup_ctx.append(consumer_ctx(group, factory))
