"""Discount codes: percentage or fixed amount off an order, usage-limited, within a window.

Created by the event's organizer (or an admin). Applied at purchase: the code is read and
checked before the charge (so the card is charged the discounted total) and its use is
counted in the purchase statement, where ``CHECK (used <= max_uses)`` has the last word
when two buyers race for the last use (the loser is refunded and gets 409).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from stagedoor.auth import Principal
from stagedoor.policy import Action, Resource, authorize
from ticketing.catalog.errors import InvalidEvent
from ticketing.ids import EventNotFound
from ticketing.orders.errors import DiscountExists, DiscountNotFound, DiscountNotValid
from ticketing.orders.store import Discount, OrderStore

Aware = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class DiscountIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
    kind: Literal["percent", "fixed"]
    value: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
    max_uses: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    valid_from: Aware | None = None
    valid_until: Aware | None = None


class DiscountOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    event_id: str
    code: str
    kind: str
    value: int
    max_uses: int
    used: int
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None


def _out(d: Discount) -> DiscountOut:
    return DiscountOut(id=d.id, event_id=str(d.event_id), code=d.code, kind=d.kind, value=d.value,
                       max_uses=d.max_uses, used=d.used, valid_from=d.valid_from, valid_until=d.valid_until)


def discount_amount(discount: Discount, subtotal: int) -> int:
    """Minor units off ``subtotal``: never more than it; a percentage rounds down to whole minor units."""
    if discount.kind == "percent":
        return min(subtotal, subtotal * discount.value // 100)
    return min(subtotal, discount.value)


async def find_applicable(store: OrderStore, event_id: int, code: str, now: dt.datetime) -> Discount:
    discount = await store.get_discount(event_id, code.upper())
    if discount is None:
        raise DiscountNotFound(f"no discount code {code!r} for this event",
                               errors=[{"field": "$.discount_code", "message": "unknown"}])
    if discount.valid_from is not None and now < discount.valid_from:
        raise DiscountNotValid("this discount code is not valid yet",
                               errors=[{"field": "$.discount_code", "message": "not yet valid"}])
    if discount.valid_until is not None and now >= discount.valid_until:
        raise DiscountNotValid("this discount code has expired",
                               errors=[{"field": "$.discount_code", "message": "expired"}])
    if discount.used >= discount.max_uses:
        raise DiscountNotValid("this discount code has been fully used",
                               errors=[{"field": "$.discount_code", "message": "used up"}])
    return discount


async def create_discount(store: OrderStore, principal: Principal, event_id: int, body: DiscountIn) -> DiscountOut:
    organizer_id, _currency, status = await store.event_owner(event_id)
    # someone else's draft is hidden (404 as for a missing event); their public event is 403
    authorize(principal, Action.EVENT_UPDATE, Resource(organizer_id=organizer_id),
              hidden=EventNotFound(f"no event {event_id}") if status == "draft" else None)
    if body.kind == "percent" and body.value > 100:
        raise InvalidEvent("a percentage discount is at most 100", errors=[{"field": "$.value", "message": "> 100"}])
    for name, value in (("valid_from", body.valid_from), ("valid_until", body.valid_until)):
        if value is not None and value.tzinfo is None:
            raise InvalidEvent(f"{name} needs a time zone (RFC 3339)",
                               errors=[{"field": f"$.{name}", "message": "no time zone"}])
    if body.valid_from and body.valid_until and body.valid_until <= body.valid_from:
        raise InvalidEvent("valid_until must be after valid_from",
                           errors=[{"field": "$.valid_until", "message": "before valid_from"}])
    created = await store.create_discount(event_id, body.code.upper(), body.kind, body.value, body.max_uses,
                                          body.valid_from, body.valid_until)
    if created is None:
        raise DiscountExists(f"the event already has a discount code {body.code.upper()}")
    return _out(created)
