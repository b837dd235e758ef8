"""Refunds of a cancelled event's orders: the consumer of EventCancelled calls
:func:`refund_event_orders` (safe to repeat; each order is refunded once).

Per order: refund the charge at the gateway that took it (the payments row's ``gateway``: after a
deployment switched gateways, old charges still go back through theirs, or, when that one cannot
be reached any more, are not refunded at all and stay confirmed, counted in
``ticketing_payment_gateway_missing_total`` and alerted on; idempotency key ``refund:<charge id>``,
so a retry after a lost answer cannot refund twice), then one statement marks the order and its
payment refunded and writes an ``OrderRefunded`` outbox row (deterministic id). A gateway
that will not answer leaves the order confirmed for the next run; nothing is half-done.
Tickets of a refunded order stay in PostgreSQL (the seat is not resold: the event is
cancelled) and no longer check in.
"""

from __future__ import annotations

import logging
import uuid

import msgspec

from stagedoor.bus_envelope import Envelope
from ticketing.orders.store import OrderStore
from ticketing.payments.charging import Payments
from ticketing.payments.gateway import Charge

logger = logging.getLogger(__name__)

REFUND_NAMESPACE = uuid.UUID("0b5b7f0e-7d7e-4c59-9a43-1f1f3c1e8d21")
_ENCODER = msgspec.json.Encoder()


class RefundRun(msgspec.Struct, frozen=True):
    refunded: int
    failed: int


async def refund_event_orders(orders: OrderStore, payments: Payments, event_id: int, batch: int = 200) -> RefundRun:
    refunded = failed = 0
    skip: list[str] = []  # orders whose refund failed in this run (retried by the next run)
    while True:
        due = await orders.confirmed_orders(event_id, batch, skip)
        if not due:
            return RefundRun(refunded, failed)
        for order in due:
            charge = Charge(id=order.charge_id, amount=order.amount, currency=order.currency)
            refund_id: str | None = "none"
            if order.amount > 0 and order.gateway != "none":
                refund_id = await payments.refund(charge, idempotency_key="refund:" + charge.id,
                                                  gateway=order.gateway)
            if refund_id is None:  # logged by Payments.refund; counted apart from confirmed refunds
                payments.metrics.refunds_failed_total.labels("event_cancelled").inc()
                failed += 1
                skip.append(order.order_id)
                continue
            payload = _ENCODER.encode({"order_id": order.order_id, "event_id": str(event_id),
                                       "user_id": order.user_id, "email": order.email, "amount": order.amount,
                                       "currency": order.currency, "reason": "event_cancelled"})
            outbox_id = str(uuid.uuid5(REFUND_NAMESPACE, order.order_id))
            if await orders.mark_refunded(order.order_id, refund_id, outbox_id, payload):
                refunded += 1
                payments.metrics.refunds_total.labels("event_cancelled").inc()
        logger.info("event_refunds_progress", extra={"event_id": event_id, "refunded": refunded, "failed": failed})


class CancellationRefunds:
    """Handler of the worker's ``refunds`` bus group: EventCancelled refunds every confirmed order of
    the event; an order the gateway would not refund fails the delivery, so it is retried with
    backoff and dead-lettered after ``bus_max_attempts``."""

    event_types = frozenset({"EventCancelled"})

    def __init__(self, orders: OrderStore, payments: Payments) -> None:
        self.orders = orders
        self.payments = payments

    async def __call__(self, env: Envelope) -> None:
        run = await refund_event_orders(self.orders, self.payments, int(env.payload["event_id"]))
        logger.info("event_refunds_done", extra={"event_id": env.payload["event_id"], "refunded": run.refunded,
                                                 "failed": run.failed})
        if run.failed:
            raise RuntimeError(f"{run.failed} order(s) not refunded yet")
