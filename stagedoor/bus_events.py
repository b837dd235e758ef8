"""The events on the bus: one versioned msgspec type per ``event_type`` (the ``Envelope.payload``).

Producers write these payloads (outbox rows, or the best-effort emitter); consumers decode
``envelope.payload`` with :func:`decode_payload`. Evolving a type: add optional fields freely
(consumers ignore unknown fields); anything incompatible gets a new ``VERSION`` and consumers
branch on ``envelope.event_version``.

Durability: every type is written to the outbox in the transaction of its change, except
``HoldPlaced`` and ``ShopperFinished`` (Redis-only hot paths, see stagedoor/bus.py BusEmitter):
those are best-effort and may be lost.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from stagedoor.bus_envelope import Envelope


class BusEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class EventCreated(BusEvent, kw_only=True):
    TYPE = "EventCreated"
    event_id: str
    organizer_id: str
    status: str  # draft | on_sale
    title: str
    starts_at: str


class EventUpdated(BusEvent, kw_only=True):
    TYPE = "EventUpdated"
    event_id: str
    fields: list[str]  # the catalog fields that changed (title, starts_at, venue, status, ...)
    status: str  # the status after the change
    title: str
    starts_at: str
    changed_at_ms: int


class EventPublished(BusEvent, kw_only=True):
    """The event went on sale (created on sale, or draft -> on_sale)."""
    TYPE = "EventPublished"
    event_id: str
    title: str
    starts_at: str


class EventCancelled(BusEvent, kw_only=True):
    TYPE = "EventCancelled"
    event_id: str
    title: str
    starts_at: str
    cancelled_by: str
    cancelled_at_ms: int


class HoldPlaced(BusEvent, kw_only=True):
    """Best-effort (not in the outbox)."""
    TYPE = "HoldPlaced"
    hold_id: str
    event_id: str
    user_id: str
    quantity: int
    expires_ms: int


class BookingExpired(BusEvent, kw_only=True):
    TYPE = "BookingExpired"
    hold_id: str
    event_id: str
    user_id: str | None = None
    seats: list[str] | None = None
    tier: str | None = None
    quantity: int | None = None
    expired_at_ms: int | None = None


class OrderConfirmed(BusEvent, kw_only=True):
    TYPE = "OrderConfirmed"
    order_id: str
    event_id: str
    user_id: str
    email: str
    total: int
    currency: str
    ticket_ids: list[str]


class PaymentFailed(BusEvent, kw_only=True):
    TYPE = "PaymentFailed"
    hold_id: str
    event_id: str
    user_id: str
    amount: int
    currency: str
    reason: str  # declined | gateway_error | unavailable


class OrderRefunded(BusEvent, kw_only=True):
    TYPE = "OrderRefunded"
    order_id: str
    event_id: str
    user_id: str
    email: str
    amount: int
    currency: str
    reason: str


class PaymentWebhookReceived(BusEvent, kw_only=True):
    """A verified gateway webhook of a handled type, as far as stagedoor reads it (the outbox row's
    event id is uuid5 of the gateway's event id: a redelivered webhook is stored once)."""
    TYPE = "PaymentWebhookReceived"
    gateway: str  # "stripe"
    gateway_event_id: str  # evt_...
    type: str  # payment_intent.succeeded | payment_intent.payment_failed | charge.refunded | charge.dispute.created
    created: int  # epoch seconds, the gateway's clock
    object_id: str  # the payment intent, charge or dispute
    payment_intent: str | None = None  # our payments.charge_id
    gateway_key: str | None = None  # the intent's metadata.gateway_key (<purchase_key>:<seq>)
    status: str | None = None  # the object's status when the event happened
    amount: int | None = None  # minor units: received (succeeded), intended (failed), charged, disputed
    currency: str | None = None  # upper case
    amount_refunded: int | None = None  # charge.refunded: refunded so far in total
    refunded: bool | None = None  # charge.refunded: the whole charge is refunded
    refund_id: str | None = None  # charge.refunded: the latest refund, when the event lists it
    reason: str | None = None  # the failure's code, the dispute's reason


class PaymentFlagged(BusEvent, kw_only=True):
    """A charge that needs a person (payment_flags row): a dispute, or amounts that do not match."""
    TYPE = "PaymentFlagged"
    flag_id: int
    kind: str  # dispute | amount_mismatch | refund_missing
    event_id: str
    order_id: str | None = None


class TicketCheckedIn(BusEvent, kw_only=True):
    TYPE = "TicketCheckedIn"
    ticket_id: str
    event_id: str
    checked_in_at: str


class SoldOut(BusEvent, kw_only=True):
    TYPE = "SoldOut"
    event_id: str
    at_ms: int


class WaitlistOfferMade(BusEvent, kw_only=True):
    """Tickets that came back to a sold-out event are held for the next fan on its waiting list
    (ticketing/waitlist/offering.py), claimable until expires_ms."""
    TYPE = "WaitlistOfferMade"
    offer_id: str
    event_id: str
    user_id: str
    quantity: int
    expires_ms: int


class ShopperFinished(BusEvent, kw_only=True):
    """Best-effort (not in the outbox): an admitted visitor's purchase committed."""
    TYPE = "ShopperFinished"
    room: str
    visitor_id: str
    event_id: str
    at_ms: int


EVENT_TYPES: dict[str, type[BusEvent]] = {t.TYPE: t for t in (
    EventCreated, EventUpdated, EventPublished, EventCancelled, HoldPlaced, BookingExpired, OrderConfirmed,
    PaymentFailed, OrderRefunded, PaymentWebhookReceived, PaymentFlagged, TicketCheckedIn, SoldOut, ShopperFinished,
    WaitlistOfferMade)}


def decode_payload(envelope: Envelope) -> BusEvent:
    """The envelope's payload as its event type (ValidationError when it does not match)."""
    return msgspec.convert(envelope.payload, EVENT_TYPES[envelope.event_type], strict=False)


def to_payload(event: BusEvent) -> dict[str, Any]:
    payload: dict[str, Any] = msgspec.to_builtins(event)
    return payload
