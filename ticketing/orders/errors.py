"""Errors of purchases, orders, idempotency keys and discount codes.

Each says what happened; stagedoor/problems.py maps the category to the status.
"""

from __future__ import annotations

from stagedoor.errors import Conflict, InvalidInput, NotFound


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


class PaymentRefunded(Conflict):
    """The charge of this Idempotency-Key was settled as a refund (or is being refunded) meanwhile."""

    code = "payment-refunded"
    title = "This payment was refunded"


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
