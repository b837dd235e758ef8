"""A paid (or free), locked hold becomes a confirmed order: shared by the purchase and by the worker's
reconciler, which completes a purchase whose request died after the charge.

- :func:`build_order`: tickets with signed codes, the answer body, the outbox payload;
- :func:`after_commit`: mirror the committed sale in Redis, remember the answer, end the shopper's
  session, note the event for the sell-out check; nothing there may undo the sale.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import msgspec

from stagedoor.admission_tokens import AdmissionClaims
from ticketing.holds.types import Hold
from ticketing.orders.idempotency import Claim
from ticketing.orders.orders import PurchaseResponse, TicketOut
from ticketing.orders.purchase_deps import PurchaseDeps
from ticketing.orders.store import NewOrder, NewTicket
from ticketing.payments.gateway import Charge
from ticketing.tickets.codes import sign_ticket_code

logger = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()


class OrderSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What an order is made of besides its hold: the purchase builds it from the request, the
    reconciler from the pending payments row (the same fields)."""

    user_id: str
    email: str
    subtotal: int
    discount: int
    discount_code_id: int | None
    idempotency_key: str
    fingerprint: str
    gateway: str
    charge: Charge
    gateway_key: str | None


ORDER_ID_NAMESPACE = uuid.UUID("3f1c2b9e-8d47-4a65-9e0b-7c2f5d1a8e34")


def order_id_of(gateway_key: str) -> str:
    """The id of the order a charge attempt pays for: the same whoever commits it (the purchase or the
    reconciler), and known before the charge, so the gateway's payment carries it."""
    return str(uuid.uuid5(ORDER_ID_NAMESPACE, gateway_key))


def build_order(deps: PurchaseDeps, hold: Hold, spec: OrderSpec) -> tuple[NewOrder, bytes]:
    """The order of a locked hold: tickets with signed codes, the answer body, the outbox payload."""
    event_id = hold.event_id
    order_id = order_id_of(spec.gateway_key) if spec.gateway_key is not None else str(uuid.uuid4())
    # A validity horizon for scanners, not business time: wall clock, not the injected one.
    code_exp_s = int(time.time()) + deps.settings.ticket_code_ttl_days * 86_400
    tickets = []
    for item in hold.items:
        ticket_id = str(uuid.uuid4())
        tickets.append(NewTicket(id=ticket_id, seat=item.seat, tier=item.tier, price=item.price,
                                 code=sign_ticket_code(deps.keyring, ticket_id, event_id, code_exp_s)))
    total = spec.subtotal - spec.discount
    response = PurchaseResponse(
        order_id=order_id, status="confirmed", event_id=event_id, hold_id=hold.id,
        tickets=[TicketOut(t.id, t.seat, t.tier, t.code) for t in tickets],
        subtotal=spec.subtotal, discount=spec.discount, total=total, currency=hold.currency,
    )
    body = _ENCODER.encode(response)
    outbox = _ENCODER.encode({
        "order_id": order_id, "event_id": event_id, "user_id": spec.user_id, "email": spec.email,
        "total": total, "currency": hold.currency, "ticket_ids": [t.id for t in tickets],
    })
    ga = hold.kind == "general_admission"
    order = NewOrder(
        id=order_id, user_id=spec.user_id, event_id=int(event_id), hold_id=hold.id, subtotal=spec.subtotal,
        discount=spec.discount, total=total, currency=hold.currency, discount_code_id=spec.discount_code_id,
        email=spec.email, tickets=tickets, ga_tier=hold.tier if ga else None, ga_quantity=len(tickets) if ga else 0,
        account_limit=deps.settings.max_tickets_per_account_per_event, gateway=spec.gateway, charge_id=spec.charge.id,
        outbox_payload=outbox, idempotency_key=spec.idempotency_key, fingerprint=spec.fingerprint, response=body,
        gateway_key=spec.gateway_key,
    )
    return order, body


async def mirror_sold(deps: PurchaseDeps, hold: Hold, now_ms: int) -> None:
    """A replayed order whose first answer was lost: its hold may still be locked in Redis."""
    try:
        await deps.holds.confirm_sold(hold, now_ms)
    except Exception:  # the inventory rebuild marks the seats sold
        logger.warning("confirm_sold_failed", extra={"event_id": hold.event_id, "hold_id": hold.id})


async def after_commit(deps: PurchaseDeps, hold: Hold, claim: Claim | None, body: bytes,
                        admission: AdmissionClaims | None, ga_left: int | None, now_ms: int) -> None:
    """Mirror the committed sale. Nothing here may undo it: failures are logged, not raised.

    Three independent jobs run concurrently: confirm-sold then noting the event for the sell-out
    check (in that order: the check runs after every noted confirm-sold, so it sees the last seat
    sold), remembering the answer for the Idempotency-Key, and ending the shopper's session."""

    async def confirm_then_check() -> None:
        try:
            overtaken = await deps.holds.confirm_sold(hold, now_ms)
        except Exception:  # the inventory rebuild will mark the seats sold
            logger.exception("confirm_sold_failed", extra={"event_id": hold.event_id, "hold_id": hold.id})
            return
        if overtaken:
            logger.warning("confirm_overtook_holds", extra={"event_id": hold.event_id, "seats": len(overtaken)})
        if ga_left is None or ga_left <= 0:  # maybe the last tickets: checked off the request path
            deps.sold_out.note(hold.event_id, admission.room if admission is not None else None)

    async def remember() -> None:
        if claim is None:  # completed by the reconciler: PostgreSQL's idempotency record replays it
            return
        try:
            await deps.idempotency.finish(claim, 201, body)
        except Exception as exc:  # PostgreSQL still has the idempotency record
            logger.warning("idempotency_finish_failed", extra={"error": type(exc).__name__})

    async def finish_shopper() -> None:
        if admission is None:
            return
        if deps.emitter is not None:  # the bus copy is the fallback when the direct call below fails
            deps.emitter.emit("ShopperFinished", admission.room, {
                "room": admission.room, "visitor_id": admission.visitor_id, "event_id": hold.event_id,
                "at_ms": now_ms})
        try:
            await deps.admission.finish_shopper(admission.room, admission.visitor_id, now_ms)
        except Exception:
            logger.exception("finish_shopper_failed", extra={"room": admission.room})

    await asyncio.gather(confirm_then_check(), remember(), finish_shopper())
