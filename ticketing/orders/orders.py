"""Orders: the request/response types of purchases and orders, and order reads.

The purchase itself is in ``purchase.py``; this module holds the shapes (the
HTTP contract's purchase and order bodies) and the read side (who may see an order).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from stagedoor.auth import Principal
from stagedoor.formats import parse_uuid, rfc3339
from stagedoor.policy import Action, may_read
from ticketing.orders.errors import OrderNotFound
from ticketing.orders.store import OrderStore

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320,
                                     pattern=r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,255}$")]
DiscountCodeText = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


class PaymentIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the fan pays: ``payment_method`` (a Stripe PaymentMethod, ``pm_...``, made by Stripe.js on the
    checkout page) or ``token`` (the mock gateway's test tokens). Exactly one of them."""

    method: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z_]+$")]
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    payment_method: Annotated[str, msgspec.Meta(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_]+$")] | None = None

    def __post_init__(self) -> None:
        if (self.token is None) == (self.payment_method is None):
            raise ValueError("give exactly one of payment.payment_method and payment.token")

    @property
    def reference(self) -> str:
        """What the gateway charges."""
        return self.payment_method or self.token or ""


class PurchaseRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    payment: PaymentIn
    email: Email
    discount_code: DiscountCodeText | None = None


class ActionRequired(msgspec.Struct, frozen=True, kw_only=True):
    """202: the fan's bank asks for strong customer authentication (3-D Secure). The page completes it with
    Stripe.js (``client_secret``), then repeats the same request with the same Idempotency-Key."""

    status: Literal["requires_action"] = "requires_action"
    client_secret: str
    payment_intent: str
    hold_id: str


class TicketOut(msgspec.Struct, frozen=True):
    id: str
    seat: str | None
    tier: str
    code: str


class PurchaseResponse(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    status: Literal["confirmed"]
    event_id: str
    hold_id: str
    tickets: list[TicketOut]
    subtotal: int
    discount: int
    total: int
    currency: str


class OrderTicket(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    seat: str | None
    tier: str
    price: int
    code: str
    checked_in_at: str | None = None


class OrderOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    event_id: str
    hold_id: str
    status: str
    subtotal: int
    discount: int
    total: int
    currency: str
    email: str
    created_at: str
    tickets: list[OrderTicket]


async def get_order(store: OrderStore, principal: Principal, order_id: str) -> OrderOut:
    """The order, for its owner, the event's organizer or an admin (others: 404, no existence leak)."""
    row = await store.get_order(parse_uuid(order_id, OrderNotFound))
    if row is None or not may_read(principal, Action.ORDER_READ, row["user_id"], row["organizer_id"]):
        raise OrderNotFound(f"no order {order_id[:60]}")
    tickets: list[dict[str, Any]] = row["tickets"]
    return OrderOut(
        id=row["id"], user_id=row["user_id"], event_id=str(row["event_id"]), hold_id=row["hold_id"],
        status=row["status"], subtotal=row["subtotal"], discount=row["discount"], total=row["total"],
        currency=row["currency"].strip(), email=row["email"], created_at=rfc3339(row["created_at"]),
        tickets=[OrderTicket(id=t["id"], seat=t["seat"], tier=t["tier"], price=t["price"], code=t["code"],
                             checked_in_at=t.get("checked_in_at")) for t in tickets],
    )
