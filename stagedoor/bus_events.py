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


class TicketCheckedIn(BusEvent, kw_only=True):
    TYPE = "TicketCheckedIn"
    ticket_id: str
    event_id: str
    checked_in_at: str


class SoldOut(BusEvent, kw_only=True):
    TYPE = "SoldOut"
    event_id: str
    at_ms: int


class ShopperFinished(BusEvent, kw_only=True):
    """Best-effort (not in the outbox): an admitted visitor's purchase committed."""
    TYPE = "ShopperFinished"
    room: str
    visitor_id: str
    event_id: str
    at_ms: int


EVENT_TYPES: dict[str, type[BusEvent]] = {t.TYPE: t for t in (
    EventCreated, EventUpdated, EventPublished, EventCancelled, HoldPlaced, BookingExpired, OrderConfirmed,
    PaymentFailed, OrderRefunded, TicketCheckedIn, SoldOut, ShopperFinished)}


def decode_payload(envelope: Envelope) -> BusEvent:
    """The envelope's payload as its event type (ValidationError when it does not match)."""
    return msgspec.convert(envelope.payload, EVENT_TYPES[envelope.event_type], strict=False)


def to_payload(event: BusEvent) -> dict[str, Any]:
    payload: dict[str, Any] = msgspec.to_builtins(event)
    return payload
