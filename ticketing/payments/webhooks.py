"""Receiving the gateway's webhooks (``POST /api/payments/webhook``; docs/payment-webhooks.md).

Stripe signs each delivery (``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`` under the
endpoint's secret). :func:`receive` checks it with the SDK's own helper (``WebhookSignature.verify_header``,
300 s tolerance against replays of an old delivery), reads the event, and stores an event of a handled
type as ONE outbox row (``PaymentWebhookReceived``) whose id is derived from Stripe's event id: Stripe
delivers at least once, and a redelivery inserts nothing. The row carries only what stagedoor reads of
the object (ids, amounts, currency, status, the intent's ``metadata.gateway_key``), never card or
billing details. The worker's ``payment_webhooks`` consumer group applies it
(ticketing/payments/webhook_effects.py); nothing else happens on the request, so Stripe gets its answer
in one insert.

Nothing is stored unless the signature is right and the body reads as an event: a bad signature or an
unreadable body is a 400 that changes nothing. Types stagedoor does not handle are answered 200 (Stripe
would otherwise retry them for days) and counted.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
import stripe

from stagedoor.bus_events import PaymentWebhookReceived, to_payload
from ticketing.metrics import TicketingMetrics
from ticketing.payments.errors import WebhookPayloadInvalid, WebhookSignatureInvalid, WebhooksNotConfigured
from ticketing.payments.webhook_store import WebhookStore

logger = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_S = 300
# uuid5(namespace, "stripe:<event id>") is the outbox row's event id: one row per Stripe event
WEBHOOK_NAMESPACE = uuid.UUID("0b7f3c52-8a61-4f0e-9d43-5e2a7c1b9f12")

HANDLED_TYPES = frozenset({"payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded",
                           "charge.dispute.created"})


class StripeEventData(msgspec.Struct, kw_only=True):
    object: dict[str, Any]


class StripeEvent(msgspec.Struct, kw_only=True):
    """The envelope of a Stripe event (unknown members are ignored)."""

    id: str
    type: str
    created: int
    data: StripeEventData
    livemode: bool = False


class PaymentError(msgspec.Struct, kw_only=True):
    code: str | None = None
    decline_code: str | None = None


class PaymentIntentObject(msgspec.Struct, kw_only=True):
    id: str
    amount: int
    currency: str
    status: str
    amount_received: int | None = None  # Stripe always sends it; a Stripe-compatible server may not
    metadata: dict[str, str] = {}
    last_payment_error: PaymentError | None = None


class RefundObject(msgspec.Struct, kw_only=True):
    id: str


class RefundList(msgspec.Struct, kw_only=True):
    data: list[RefundObject] = []


class ChargeObject(msgspec.Struct, kw_only=True):
    id: str
    amount: int
    currency: str
    amount_refunded: int = 0
    refunded: bool = False
    status: str | None = None
    payment_intent: str | None = None
    metadata: dict[str, str] = {}
    refunds: RefundList | None = None


class DisputeObject(msgspec.Struct, kw_only=True):
    id: str
    amount: int
    currency: str
    status: str | None = None
    reason: str | None = None
    charge: str | None = None
    payment_intent: str | None = None


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to Stripe (200): ``stored`` false for a redelivery or an ignored type."""

    received: bool = True
    stored: bool
    ignored: bool = False


_decode_event = msgspec.json.Decoder(StripeEvent).decode
_encode = msgspec.json.Encoder().encode


def outbox_event_id(gateway_event_id: str) -> str:
    return str(uuid.uuid5(WEBHOOK_NAMESPACE, f"stripe:{gateway_event_id}"))


def verify(body: bytes, signature: str | None, secret: str) -> None:
    """WebhookSignatureInvalid unless ``signature`` is Stripe's for this body and secret, made within the
    tolerance."""
    if not secret:
        raise WebhooksNotConfigured("no webhook receiver is configured")
    try:
        stripe.WebhookSignature.verify_header(body, signature, secret, tolerance=SIGNATURE_TOLERANCE_S)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise WebhookSignatureInvalid("the Stripe-Signature header does not match this body") from exc


def _charged(event_type: str, pi: PaymentIntentObject) -> int:
    """What the event says was taken: the amount received of a succeeded intent (automatic capture: all of
    it), else the amount asked for. Without ``amount_received`` a succeeded intent took its amount."""
    if event_type.endswith("succeeded") and pi.amount_received is not None:
        return pi.amount_received
    return pi.amount


def _upper(currency: str) -> str:
    return currency.strip().upper()


def read_event(event: StripeEvent) -> PaymentWebhookReceived:
    """What stagedoor keeps of a handled event; WebhookPayloadInvalid when its object does not read."""
    base: dict[str, Any] = {"gateway": "stripe", "gateway_event_id": event.id, "type": event.type,
                            "created": event.created}
    obj = event.data.object
    try:
        if event.type.startswith("payment_intent."):
            pi = msgspec.convert(obj, PaymentIntentObject)
            error = pi.last_payment_error
            return PaymentWebhookReceived(
                **base, object_id=pi.id, payment_intent=pi.id, gateway_key=pi.metadata.get("gateway_key"),
                status=pi.status, amount=_charged(event.type, pi),
                currency=_upper(pi.currency),
                reason=None if error is None else (error.decline_code or error.code))
        if event.type == "charge.refunded":
            charge = msgspec.convert(obj, ChargeObject)
            refunds = charge.refunds.data if charge.refunds is not None else []
            return PaymentWebhookReceived(
                **base, object_id=charge.id, payment_intent=charge.payment_intent,
                gateway_key=charge.metadata.get("gateway_key"), status=charge.status, amount=charge.amount,
                currency=_upper(charge.currency), amount_refunded=charge.amount_refunded, refunded=charge.refunded,
                refund_id=refunds[0].id if refunds else None)
        if event.type != "charge.dispute.created":
            raise WebhookPayloadInvalid(f"{event.type} is not read here")
        dispute = msgspec.convert(obj, DisputeObject)
        return PaymentWebhookReceived(
            **base, object_id=dispute.id, payment_intent=dispute.payment_intent, status=dispute.status,
            amount=dispute.amount, currency=_upper(dispute.currency), reason=dispute.reason)
    except msgspec.ValidationError as exc:
        raise WebhookPayloadInvalid(f"the {event.type} object does not read: {exc}") from exc


async def receive(store: WebhookStore, metrics: TicketingMetrics, secret: str, body: bytes,
                  signature: str | None) -> Receipt:
    """Verify, read and store one delivery (see the module docstring)."""
    counter = metrics.payment_webhooks_total
    try:
        verify(body, signature, secret)
    except WebhookSignatureInvalid:
        counter.labels("unknown", "bad_signature").inc()
        logger.warning("payment_webhook_refused", extra={"reason": "bad_signature"})
        raise
    try:
        event = _decode_event(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        counter.labels("unknown", "bad_payload").inc()
        logger.warning("payment_webhook_refused", extra={"reason": "bad_payload"})
        raise WebhookPayloadInvalid(f"the body is not a Stripe event: {exc}") from exc
    if event.type not in HANDLED_TYPES:
        counter.labels(event.type[:60], "ignored").inc()
        logger.info("payment_webhook_ignored", extra={"gateway_event_id": event.id, "type": event.type})
        return Receipt(stored=False, ignored=True)
    try:
        fact = read_event(event)
    except WebhookPayloadInvalid:
        counter.labels(event.type, "bad_payload").inc()
        logger.warning("payment_webhook_refused", extra={"reason": "bad_payload", "type": event.type,
                                                         "gateway_event_id": event.id})
        raise
    stored = await store.record(outbox_event_id(event.id), fact.TYPE, event.id, _encode(to_payload(fact)))
    counter.labels(event.type, "stored" if stored else "duplicate").inc()
    logger.info("payment_webhook_received", extra={"gateway_event_id": event.id, "type": event.type,
                                                   "stored": stored, "livemode": event.livemode})
    return Receipt(stored=stored)
