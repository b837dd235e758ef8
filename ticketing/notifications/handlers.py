"""The notifications' bus consumer (group "notifications"): one handler per event type
(OrderConfirmed, EventUpdated, EventCancelled, PaymentFlagged, WaitlistOfferMade).

Delivery is at-least-once; the sent-log makes the effect exactly-once per (event id,
recipient, kind). Returning acknowledges; raising (:class:`NotificationsIncomplete` when a
recipient failed in this delivery or is being sent by another consumer) makes the bus retry
and, after ``STAGEDOOR_BUS_MAX_ATTEMPTS``, dead-letter the envelope. Fan-outs to all holders
are recorded as jobs (durably, idempotently) and acknowledged at once; the worker's job loop
sends them, so a cancellation with 50,000 holders never blocks the consumer or hits its
handler timeout. Everything the messages say is read from PostgreSQL by the ids the event
carries, not taken from the payload.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from stagedoor.bus_envelope import Envelope, Handler
from ticketing.appkeys import NOTIFICATIONS
from ticketing.notifications.service import NOTABLE_FIELDS, Notifications, raise_if_incomplete

logger = logging.getLogger(__name__)


def _event_id(env: Envelope) -> int | None:
    raw = env.payload.get("event_id", env.aggregate_id)
    try:
        return int(str(raw))
    except ValueError:
        logger.warning("notification_bad_event_id", extra={"event_type": env.event_type, "event_id": env.event_id})
        return None


async def on_order_confirmed(n: Notifications, env: Envelope) -> None:
    order_id = str(env.payload.get("order_id") or env.aggregate_id)
    # The checkout collects no phone number today: an SMS goes out only when the event carries one.
    outcomes = await n.order_confirmed(env.event_id, order_id, phone=env.payload.get("phone"))
    raise_if_incomplete("order_confirmed", outcomes)


async def on_event_updated(n: Notifications, env: Envelope) -> None:
    event_id = _event_id(env)
    if event_id is None:
        return
    fields = env.payload.get("fields")
    changed = sorted(NOTABLE_FIELDS.intersection(fields)) if isinstance(fields, list) else sorted(NOTABLE_FIELDS)
    if not changed:
        return  # e.g. a status or hold-TTL change: nothing a ticket holder needs to hear about
    await n.record_job(env.event_id, "event_updated", event_id,
                       {"fields": changed, "sequence": env.created_at_ms // 1000})


async def on_event_cancelled(n: Notifications, env: Envelope) -> None:
    event_id = _event_id(env)
    if event_id is None:
        return
    await n.record_job(env.event_id, "event_cancelled", event_id, {})


async def on_payment_flagged(n: Notifications, env: Envelope) -> None:
    try:
        flag_id = int(env.payload["flag_id"])
    except (KeyError, TypeError, ValueError):
        logger.warning("notification_bad_flag", extra={"event_type": env.event_type, "event_id": env.event_id})
        return
    raise_if_incomplete("payment_flagged", await n.payment_flagged(env.event_id, flag_id))


async def on_waitlist_offer(n: Notifications, env: Envelope) -> None:
    offer_id = str(env.payload.get("offer_id") or env.aggregate_id)
    raise_if_incomplete("waitlist_offer", await n.waitlist_offer(env.event_id, offer_id))


HANDLERS: dict[str, Callable[[Notifications, Envelope], Awaitable[None]]] = {
    "OrderConfirmed": on_order_confirmed,
    "EventUpdated": on_event_updated,
    "EventCancelled": on_event_cancelled,
    "PaymentFlagged": on_payment_flagged,
    "WaitlistOfferMade": on_waitlist_offer,
}


def notification_handler(app: web.Application) -> Handler:
    """The handler factory ``stagedoor.bus.consumer_ctx`` calls at start-up."""
    n = app[NOTIFICATIONS]

    async def handle(env: Envelope) -> None:
        fn = HANDLERS.get(env.event_type)
        if fn is not None:
            await fn(n, env)

    # an attribute on the function object, read by the StreamConsumer (others are acked unread); typeshed's
    # function type declares no others
    handle.event_types = frozenset(HANDLERS)  # type: ignore[attr-defined]
    return handle
