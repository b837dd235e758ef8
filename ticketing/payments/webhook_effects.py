"""Applying the gateway's webhooks: the worker's ``payment_webhooks`` bus group (docs/payment-webhooks.md).

Each ``PaymentWebhookReceived`` (stored by ticketing/payments/webhooks.py) is applied against where its
charge stands: the charge attempt of its ``metadata.gateway_key`` and that key's settled payments row
(ticketing/payments/records.py). Every effect is a compare-and-set or an insert-once, so a delivery
applied twice (the bus is at-least-once) changes nothing the second time.

- ``payment_intent.succeeded``: amount or currency other than the attempt's (or the order's, once
  committed) -> a flag (``amount_mismatch``: payment_flags row, PaymentFlagged, the organizer e-mailed),
  and an unsettled charge is claimed for a refund (its key's payments row ``refunding``, which the
  purchase statement can no longer take: never confirmed; the reconciler's refund loop pays it back).
  Otherwise an unsettled attempt records the charge; the reconciler completes it after the payment
  window like any other (a live purchase may be about to commit it). An attempt marked failed earlier
  was charged after all: back to ``unknown`` for the reconciler. Already committed: nothing to do.
- ``payment_intent.payment_failed``: an unsettled attempt for which no success was heard -> ``failed``
  with the gateway's reason. Stripe does not order its events: a success is final for an intent, so a
  failure delivered after it changes nothing, and a success delivered after a failure reopens the
  attempt (above).
- ``charge.refunded``: a refund stagedoor owed (``refunding``/``refund_failed``) is confirmed; a refund
  made at the gateway of a confirmed order refunds the order (in full: order and payment ``refunded``,
  OrderRefunded) or records the amount returned (in part: ``payments.amount_refunded``).
- ``charge.dispute.created``: a flag (``dispute``) on the charge's order, the organizer e-mailed.

A webhook whose charge stagedoor does not know (a payment made outside it) is counted ``unmatched``.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable

import msgspec

from stagedoor.bus_envelope import Envelope
from stagedoor.bus_events import PaymentWebhookReceived
from ticketing.metrics import TicketingMetrics
from ticketing.payments.records import PaymentRecords
from ticketing.payments.webhook_store import Standing, WebhookStore

logger = logging.getLogger(__name__)

GROUP = "payment_webhooks"
EFFECT_NAMESPACE = uuid.UUID("7c1d2e9a-3b54-4f8e-a0c6-2d9b8e4f1a37")
CLAIM_REFUND_NOW_S = 0.0  # a mismatched charge's refund is due at once (the reconciler's refund loop)


def effect_id(kind: str, gateway_event_id: str) -> str:
    """The outbox event id of an effect's own announcement (one per webhook and kind)."""
    return str(uuid.uuid5(EFFECT_NAMESPACE, f"{kind}:{gateway_event_id}"))


class PaymentWebhooks:
    """The bus handler of group ``payment_webhooks``."""

    event_types = frozenset({PaymentWebhookReceived.TYPE})

    def __init__(self, store: WebhookStore, records: PaymentRecords, metrics: TicketingMetrics) -> None:
        self.store = store
        self.records = records
        self.metrics = metrics
        self._handlers: dict[str, Callable[[PaymentWebhookReceived, Standing], Awaitable[str]]] = {
            "payment_intent.succeeded": self.succeeded,
            "payment_intent.payment_failed": self.payment_failed,
            "charge.refunded": self.refunded,
            "charge.dispute.created": self.disputed,
        }

    async def __call__(self, env: Envelope) -> None:
        hook = msgspec.convert(env.payload, PaymentWebhookReceived, strict=False)
        handler = self._handlers.get(hook.type)
        if handler is None:  # stored by a receiver that handled more types than this worker
            outcome = "ignored"
        else:
            standing = await self.store.standing(hook.gateway_key, hook.payment_intent)
            outcome = "unmatched" if standing.attempt is None and standing.payment is None \
                else await handler(hook, standing)
        self.metrics.payment_webhook_effects_total.labels(hook.type, outcome).inc()
        log = logger.warning if outcome in ("unmatched", "flagged", "refund_claimed") else logger.info
        log("payment_webhook_applied", extra={"gateway_event_id": hook.gateway_event_id, "type": hook.type,
                                              "outcome": outcome, "gateway_key": hook.gateway_key,
                                              "charge_id": hook.payment_intent})

    # ------------------------------------------------------------ payment_intent.succeeded
    async def succeeded(self, hook: PaymentWebhookReceived, standing: Standing) -> str:
        attempt, payment = standing.attempt, standing.payment
        if payment is not None:  # settled: committed with its order, or a refund owed or made
            if payment.order_id is not None and not _same_money(hook, payment.amount, payment.currency):
                return await self._flag("amount_mismatch", hook, payment.gateway_key, payment.order_id,
                                        payment.event_id, expected=(payment.amount, payment.currency))
            return "settled_already"
        assert attempt is not None
        key = attempt.gateway_key
        charge_id = hook.payment_intent or hook.object_id
        charged_at = dt.datetime.fromtimestamp(hook.created, dt.UTC)
        if not _same_money(hook, attempt.amount, attempt.currency):
            outcome = await self._flag("amount_mismatch", hook, key, None, attempt.event_id,
                                       expected=(attempt.amount, attempt.currency))
            await self.store.record_charge(key, charge_id, charged_at)  # a failed attempt: unknown, claimable
            claimed = await self.records.claim_refund(key, charge_id=charge_id, amount=hook.amount or attempt.amount,
                                                      reason="amount_mismatch", retry_in_s=CLAIM_REFUND_NOW_S)
            return "refund_claimed" if claimed else outcome
        before = await self.store.record_charge(key, charge_id, charged_at)
        if before is None:
            return "settled_already"
        return "reopened" if before == "failed" else "charge_recorded"

    # ------------------------------------------------------------ payment_intent.payment_failed
    async def payment_failed(self, hook: PaymentWebhookReceived, standing: Standing) -> str:
        attempt = standing.attempt
        if attempt is None or standing.payment is not None or hook.status == "succeeded":
            return "settled_already"
        reason = f"gateway:{hook.reason or 'payment_failed'}"
        if await self.store.mark_failed(attempt.gateway_key, reason, hook.payment_intent or hook.object_id):
            return "failed"
        return "ignored"  # a success was heard, or the attempt was settled or failed meanwhile

    # ------------------------------------------------------------ charge.refunded
    async def refunded(self, hook: PaymentWebhookReceived, standing: Standing) -> str:
        payment = standing.payment
        if payment is None or payment.gateway_key is None:
            return "ignored"  # an unsettled charge: the reconciler's lookup settles it
        refund_id = hook.refund_id or hook.object_id
        if payment.status in ("refunding", "refund_failed"):  # a refund stagedoor owed: confirmed
            return "refund_confirmed" if await self.records.mark_refunded(payment.gateway_key, refund_id) \
                else "settled_already"
        if payment.status != "succeeded" or payment.order_id is None or payment.order_status != "confirmed":
            return "settled_already"
        returned = hook.amount_refunded or 0
        if hook.refunded or returned >= payment.amount:
            done = await self.store.refund_order(payment.order_id, refund_id, payment.amount,
                                                 effect_id("order_refunded", hook.gateway_event_id),
                                                 "refunded_at_gateway")
            if done:
                self.metrics.refunds_total.labels("refunded_at_gateway").inc()
            return "order_refunded" if done else "settled_already"
        if returned and await self.store.refund_part(payment.gateway_key, returned):
            return "partially_refunded"
        return "settled_already"

    # ------------------------------------------------------------ charge.dispute.created
    async def disputed(self, hook: PaymentWebhookReceived, standing: Standing) -> str:
        payment, attempt = standing.payment, standing.attempt
        if payment is not None:
            return await self._flag("dispute", hook, payment.gateway_key, payment.order_id, payment.event_id)
        assert attempt is not None
        return await self._flag("dispute", hook, attempt.gateway_key, None, attempt.event_id)

    # ------------------------------------------------------------ flags
    async def _flag(self, kind: str, hook: PaymentWebhookReceived, gateway_key: str | None, order_id: str | None,
                    event_id: int | None, expected: tuple[int, str] | None = None) -> str:
        if event_id is None:  # a payments row from before payments knew their event, without an order
            return "unmatched"
        details: dict[str, object] = {"gateway_object": hook.object_id, "amount": hook.amount,
                                      "currency": hook.currency, "status": hook.status}
        if hook.reason is not None:
            details["reason"] = hook.reason
        if expected is not None:
            details["expected_amount"], details["expected_currency"] = expected
        flag_id = await self.store.flag(kind=kind, source_event=hook.gateway_event_id, gateway=hook.gateway,
                                        gateway_key=gateway_key, charge_id=hook.payment_intent, order_id=order_id,
                                        event_id=event_id, details=details,
                                        outbox_event_id=effect_id(f"flag:{kind}", hook.gateway_event_id))
        if flag_id is not None:
            self.metrics.payment_flags_total.labels(kind).inc()
            logger.warning("payment_flagged", extra={"kind": kind, "flag_id": flag_id, "event_id": event_id,
                                                     "order_id": order_id, "gateway_key": gateway_key})
        return "flagged"


def _same_money(hook: PaymentWebhookReceived, amount: int, currency: str) -> bool:
    return hook.amount == amount and (hook.currency or "").upper() == currency.strip().upper()
