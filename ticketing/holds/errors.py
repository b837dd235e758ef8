"""Errors of seat holds and the holdable inventory.

Each says what happened; stagedoor/problems.py maps the category to the status.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import RedisError

from stagedoor.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    Unavailable,
    redis_unavailable_reason,
)


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


class AdmissionInUse(Forbidden):
    """An admission is one fan's: bound to the first account that held with it."""

    code = "admission-in-use"
    title = "This admission belongs to another account"

    def __init__(self) -> None:
        super().__init__("the admission token was already used by another account; an admission is one fan's "
                         "place in line: join the queue with your own")


class AdmissionLimitReached(InvalidInput):
    """Tickets held plus tickets already bought through one admission would pass the per-order limit."""

    code = "admission-limit-reached"
    title = "Over the ticket limit of this admission"

    def __init__(self, requested: int, limit: int, bought: int) -> None:
        super().__init__(f"{requested} ticket(s) requested and {bought} already bought through this admission; "
                         f"at most {limit} per admission", limit=limit, bought=bought)


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


class InventoryNotLoaded(InventoryUnavailable):
    """The event's inventory is absent from Redis (never loaded, or lost): rebuild, then retry."""

    code = "inventory-not-loaded"


class AdmissionNeeded(Exception):
    """The event is gated by a waiting room and the caller showed no valid admission token."""


class EventNotOnSale(Conflict):
    code = "event-not-on-sale"
    title = "The event is not on sale"


@contextlib.contextmanager
def redis_or_unavailable(detail: str = "seat inventory (Redis) is unavailable") -> Iterator[None]:
    """Turn a Redis that cannot serve for now (unreachable, or refusing: out of memory, read-only...;
    stagedoor.errors.redis_unavailable_reason) into InventoryUnavailable, a 503 to retry; any other
    Redis error stays what it is (a bug)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        if isinstance(exc, RedisError) and redis_unavailable_reason(exc) is None:
            raise
        raise InventoryUnavailable(detail) from exc
