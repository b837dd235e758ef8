"""Ticketing errors: each says what happened; problems.py maps the category to the status.

Shared by the catalog/holds work and the purchase work (append classes below).
"""

from __future__ import annotations

from stagedoor.errors import (
    BadGateway,
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    PaymentRequired,
    Unavailable,
)


# ---------------------------------------------------------------- catalog
class EventNotFound(NotFound):
    code = "event-not-found"
    title = "No such event"


class NotEventOwner(Forbidden):
    code = "not-event-owner"
    title = "Only the event's organizer or an admin may do this"


class InvalidEvent(InvalidInput):
    code = "invalid-event"
    title = "Invalid event definition"


class EventNotOnSale(Conflict):
    code = "event-not-on-sale"
    title = "The event is not on sale"


class InvalidStatusChange(Conflict):
    code = "invalid-status-change"
    title = "That status change is not allowed"


class InvalidCursor(InvalidInput):
    code = "invalid-cursor"
    title = "Invalid pagination cursor"


# ---------------------------------------------------------------- holds
class HoldNotFound(NotFound):
    code = "hold-not-found"
    title = "No such hold"


class NotHoldOwner(Conflict):
    """The HTTP contract: a hold that is not yours -> 409."""

    code = "hold-not-yours"
    title = "The hold belongs to another user"


class SeatUnavailable(Conflict):
    code = "seat-unavailable"
    title = "Seats no longer available"

    def __init__(self, seat_ids: list[str]) -> None:
        super().__init__(f"{len(seat_ids)} seat(s) are held or sold: {', '.join(seat_ids[:20])}",
                         conflicts=seat_ids)
        self.seat_ids = seat_ids


class TicketsUnavailable(Conflict):
    code = "tickets-unavailable"
    title = "Not enough tickets left in this tier"

    def __init__(self, tier: str, available: int) -> None:
        super().__init__(f"only {available} ticket(s) left in tier {tier}", tier=tier, available=available,
                         conflicts=[])


class ActiveHoldExists(Conflict):
    code = "active-hold-exists"
    title = "You already hold tickets for this event"

    def __init__(self, hold_id: str) -> None:
        super().__init__("release, purchase or let expire your current hold first", hold_id=hold_id)


class UnknownSeats(InvalidInput):
    code = "unknown-seats"
    title = "Unknown seats"

    def __init__(self, seat_ids: list[str]) -> None:
        super().__init__(f"no such seat(s) in this event: {', '.join(seat_ids[:20])}", unknown_seats=seat_ids)


class InvalidHoldRequest(InvalidInput):
    code = "invalid-hold-request"
    title = "Invalid hold request"


class OverOrderLimit(InvalidInput):
    code = "over-order-limit"
    title = "Over the per-order ticket limit"

    def __init__(self, requested: int, limit: int) -> None:
        super().__init__(f"{requested} ticket(s) requested; at most {limit} per order", limit=limit)


class HoldExpired(Gone):
    code = "hold-expired"
    title = "The hold has expired"


class HoldReleased(Gone):
    code = "hold-released"
    title = "The hold was released"


class HoldAlreadySold(Conflict):
    code = "hold-already-sold"
    title = "The hold has already been purchased"


class HoldLocked(Conflict):
    code = "hold-locked"
    title = "A payment for this hold is in progress"


class HoldSeatLost(Gone):
    """A seat of the hold now belongs to someone else (the hold expired and was overtaken)."""

    code = "hold-seat-lost"
    title = "The hold lost a seat after expiring"


class InventoryUnavailable(Unavailable):
    code = "inventory-unavailable"
    title = "Seat inventory is temporarily unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or "seat inventory is being rebuilt; retry shortly", retry_after_s=1)


# ---------------------------------------------------------------- purchases, payments, tickets
class PaymentDeclined(PaymentRequired):
    code = "payment-declined"
    title = "Payment declined"


class PaymentGatewayError(BadGateway):
    code = "payment-gateway-error"
    title = "The payment gateway failed"


class PaymentGatewayUnavailable(Unavailable):
    """The circuit breaker is open: fail fast instead of queueing on a sick gateway."""

    code = "payment-gateway-unavailable"
    title = "Payments are temporarily unavailable"


class IdempotencyKeyRequired(InvalidInput):
    code = "idempotency-key-required"
    title = "An Idempotency-Key header is required"


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency-key-reused"
    title = "The Idempotency-Key was used for a different request"


class PurchaseInProgress(Conflict):
    """A request with the same Idempotency-Key is being processed (pretix's pattern: 409 + Retry-After)."""

    code = "purchase-in-progress"
    title = "A purchase with this Idempotency-Key is in progress"


class SeatsAlreadySold(Conflict):
    """Redis said free, PostgreSQL said sold: the unique constraint had the last word."""

    code = "seats-already-sold"
    title = "Seats were sold to someone else"


class AccountTicketLimit(Conflict):
    code = "account-ticket-limit"
    title = "Per-account ticket limit for this event reached"


class DiscountNotFound(InvalidInput):
    code = "discount-not-found"
    title = "Unknown discount code"


class DiscountNotValid(InvalidInput):
    code = "discount-not-valid"
    title = "Discount code not valid now"


class DiscountExhausted(Conflict):
    code = "discount-exhausted"
    title = "Discount code fully used"


class DiscountExists(Conflict):
    code = "discount-exists"
    title = "A discount code with this name exists for the event"


class OrderNotFound(NotFound):
    code = "order-not-found"
    title = "No such order"


class TicketNotFound(NotFound):
    code = "ticket-not-found"
    title = "Unknown or forged ticket"


class AlreadyCheckedIn(Conflict):
    code = "already-checked-in"
    title = "Ticket already checked in"
