"""The purchase: ``POST /api/holds/{id}/purchase`` from Idempotency-Key to tickets.

    claim the Idempotency-Key (Redis; a duplicate replays or gets 409 + Retry-After)
    -> the hold is the caller's and live; gated event: a valid admission token
    -> lock the hold for the payment window (it cannot expire mid-charge)
    -> charge (retries + circuit breaker, ticketing/payments/charging.py)
    -> ONE PostgreSQL statement: order, tickets, payment, outbox OrderConfirmed, idempotency
       record, GA / account / discount counters (ticketing/orders/store.py)
    -> confirm sold in Redis, remember the answer, tell admission the shopper is done,
       announce a sell-out.

Sold once: the unique constraint on tickets (event_id, seat_id) has the last word; when it
refuses (Redis said free, PostgreSQL says sold) the charge is refunded and the buyer gets
409, counted by ``ticketing_oversell_prevented_total``. PostgreSQL is the truth: if Redis
fails after the commit, the order stands and the inventory rebuild marks the seats sold.
One clock reading per purchase (``now_ms``), passed down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

import msgspec

from rooms.sessions import room_from_reply
from stagedoor.admission_tokens import AdmissionClaims, verify_admission_token
from stagedoor.auth import Principal
from stagedoor.bus import BusEmitter
from stagedoor.errors import DependencyUnavailable, StagedoorError
from stagedoor.keys import KeyRing
from stagedoor.policy import Action, Resource, authorize
from stagedoor.settings import Settings
from ticketing.holds.errors import HoldAlreadySold, HoldNotFound, NotHoldOwner
from ticketing.holds.shopper_session import AdmissionHooks, ShopperSessionEnded
from ticketing.holds.store import HoldStore
from ticketing.holds.types import Hold, event_of_hold_id
from ticketing.metrics import TicketingMetrics
from ticketing.orders.discounts import discount_amount, find_applicable
from ticketing.orders.errors import AccountTicketLimit, DiscountExhausted, SeatsAlreadySold
from ticketing.orders.idempotency import Claim, IdempotencyStore, Replay, check_replay, fingerprint, validate_key
from ticketing.orders.orders import PurchaseRequest, PurchaseResponse, TicketOut
from ticketing.orders.sold_out import SoldOutWatch
from ticketing.orders.store import CommitRefused, NewOrder, NewTicket, OrderStore
from ticketing.payments.charging import Payments
from ticketing.payments.gateway import Charge
from ticketing.tickets.codes import sign_ticket_code

logger = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True)
class PurchaseDeps:
    holds: HoldStore
    orders: OrderStore
    payments: Payments
    idempotency: IdempotencyStore
    keyring: KeyRing
    metrics: TicketingMetrics
    settings: Settings
    admission: AdmissionHooks
    sold_out: SoldOutWatch
    emitter: BusEmitter | None = None  # best-effort ShopperFinished (stagedoor/bus.py)


class PurchaseInput(msgspec.Struct, frozen=True, kw_only=True):
    hold_id: str
    principal: Principal
    idempotency_key: str | None
    body: PurchaseRequest
    admission_token: str | None
    now_ms: int


async def purchase(deps: PurchaseDeps, req: PurchaseInput) -> Replay:
    """Run (or replay) a purchase; returns the HTTP status and exact JSON body to send."""
    key = validate_key(req.idempotency_key)
    event_id = event_of_hold_id(req.hold_id)
    user_id = req.principal.id
    fp = fingerprint(req.hold_id, _ENCODER.encode(req.body))
    # A presented admission token is checked now (CPU only, verification is cached) so that its
    # shopper-session check rides in the claim's round trip; a gated event re-checks it below.
    presented = _presented_admission(deps, req.admission_token, event_id)
    # One round trip: the claim, the room gating the event, the hold's record, the shopper session.
    also = (deps.admission.event_room_command(event_id), deps.holds.hold_record_command(req.hold_id),
            *((deps.admission.session_command(presented),) if presented else ()))
    claimed, replies = await deps.idempotency.claim(user_id, key, fp, also=also)
    if isinstance(claimed, Replay):
        deps.metrics.purchases_total.labels("replayed").inc()
        return claimed
    room, hold_record = room_from_reply(replies[0]), replies[1]
    session = (presented, replies[2]) if presented else None
    try:
        result = await _purchase_claimed(deps, req, claimed, event_id, room, hold_record, session)
    except StagedoorError as exc:
        await _abandon(deps, claimed)
        deps.metrics.purchases_total.labels(exc.code).inc()
        raise
    except BaseException:
        await _abandon(deps, claimed)
        deps.metrics.purchases_total.labels("error").inc()
        raise
    return result


def _presented_admission(deps: PurchaseDeps, token: str | None, event_id: str) -> AdmissionClaims | None:
    if not token:
        return None
    try:
        return verify_admission_token(deps.keyring, token, event_id)
    except StagedoorError:  # refused below if the event is gated; irrelevant if it is not
        return None


async def _unlock(deps: PurchaseDeps, held: Hold) -> None:
    """No money moved: release the payment window so a fan who walks away after a decline does not
    block the seats for all of it (they keep the hold until its own expiry to retry)."""
    try:
        await deps.holds.unlock_after_failed_payment(held)
    except Exception:  # the payment window then runs out on its own
        logger.warning("hold_unlock_failed", extra={"event_id": held.event_id, "hold_id": held.id})


async def _abandon(deps: PurchaseDeps, claim: Claim) -> None:
    try:
        await deps.idempotency.abandon(claim)
    except Exception:  # Redis trouble: the claim expires on its own (idempotency_inflight_ttl_s)
        logger.warning("idempotency_abandon_failed")


async def _replay_committed(deps: PurchaseDeps, user_id: str, claim: Claim) -> Replay | None:
    stored = await deps.orders.replay(user_id, claim.key)
    if stored is None:
        return None
    replay = check_replay(claim.fingerprint, stored.fingerprint, stored.status, stored.body)
    await deps.idempotency.finish(claim, replay.status, replay.body)
    deps.metrics.purchases_total.labels("replayed").inc()
    return replay


async def _purchase_claimed(deps: PurchaseDeps, req: PurchaseInput, claim: Claim, event_id: str,
                            room: str | None, hold_record: bytes | None,
                            session: tuple[AdmissionClaims, bytes | str | float | None] | None) -> Replay:
    user_id, now_ms = req.principal.id, req.now_ms
    admission: AdmissionClaims | None = None
    if room is not None:
        admission = verify_admission_token(deps.keyring, req.admission_token, event_id)
        if session is not None:  # a valid token always has its session read
            try:
                deps.admission.require_active(session[0], session[1], now_ms)
            except ShopperSessionEnded:  # finished by this very purchase (a retry)? Then replay it.
                replay = await _replay_committed(deps, user_id, claim)
                if replay is not None:
                    return replay
                raise

    try:
        if hold_record is None:
            raise HoldNotFound(f"no hold {req.hold_id}")
        # The record came with the Idempotency-Key claim (one round trip); HoldStore parses it.
        hold = deps.holds.hold_from_record(req.hold_id, hold_record)
        authorize(req.principal, Action.PURCHASE, Resource(owner_id=hold.user_id),
                  hidden=NotHoldOwner("this hold belongs to another user"))
        if hold.state == "sold":
            raise HoldAlreadySold("the hold has already been purchased")
        discount = None
        subtotal = hold.total
        if req.body.discount_code:
            now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
            discount = await find_applicable(deps.orders, int(event_id), req.body.discount_code, now)
        off = discount_amount(discount, subtotal) if discount else 0
        held = hold  # as it was before the payment window (a failed charge goes back to it)
        hold = await deps.holds.lock_for_payment(hold, now_ms, deps.settings.payment_window_s * 1000)
    except (HoldNotFound, HoldAlreadySold):
        # Bought already (this key, maybe before Redis lost its data)? Then replay that answer.
        replay = await _replay_committed(deps, user_id, claim)
        if replay is not None:
            return replay
        raise

    total = subtotal - off
    if total > 0:
        try:
            charge = await deps.payments.charge(amount=total, currency=hold.currency,
                                                token=req.body.payment.token, idempotency_key=claim.nonce)
        except StagedoorError as exc:  # declined, gateway error, breaker open: announce PaymentFailed
            await _unlock(deps, held)
            await _announce_payment_failed(deps, hold, user_id, total, claim, exc)
            raise
        gateway: str = deps.settings.payment_gateway
    else:
        charge = Charge(id="free_" + claim.nonce, amount=0, currency=hold.currency)
        gateway = "none"

    order_id = str(uuid.uuid4())
    # A validity horizon for scanners, not business time: wall clock, not the injected one.
    code_exp_s = int(time.time()) + deps.settings.ticket_code_ttl_days * 86_400
    tickets = []
    for item in hold.items:
        ticket_id = str(uuid.uuid4())
        tickets.append(NewTicket(id=ticket_id, seat=item.seat, tier=item.tier, price=item.price,
                                 code=sign_ticket_code(deps.keyring, ticket_id, event_id, code_exp_s)))
    response = PurchaseResponse(
        order_id=order_id, status="confirmed", event_id=event_id, hold_id=hold.id,
        tickets=[TicketOut(t.id, t.seat, t.tier, t.code) for t in tickets],
        subtotal=subtotal, discount=off, total=total, currency=hold.currency,
    )
    body = _ENCODER.encode(response)
    outbox = _ENCODER.encode({
        "order_id": order_id, "event_id": event_id, "user_id": user_id, "email": req.body.email,
        "total": total, "currency": hold.currency, "ticket_ids": [t.id for t in tickets],
    })
    ga = hold.kind == "general_admission"
    order = NewOrder(
        id=order_id, user_id=user_id, event_id=int(event_id), hold_id=hold.id, subtotal=subtotal, discount=off,
        total=total, currency=hold.currency, discount_code_id=discount.id if discount else None,
        email=req.body.email, tickets=tickets, ga_tier=hold.tier if ga else None, ga_quantity=len(tickets) if ga else 0,
        account_limit=deps.settings.max_tickets_per_account_per_event, gateway=gateway, charge_id=charge.id,
        outbox_payload=outbox, idempotency_key=claim.key, fingerprint=claim.fingerprint, response=body,
    )
    try:
        ga_left = await deps.orders.commit_purchase(order)
    except CommitRefused as exc:
        return await _refused(deps, req, claim, hold, charge, gateway, exc)
    except DependencyUnavailable:
        await _refund(deps, user_id, charge, gateway, "database_unavailable")
        raise

    deps.metrics.orders_confirmed_total.inc()
    deps.metrics.purchases_total.labels("confirmed").inc()
    logger.info("order_confirmed", extra={"event_id": event_id, "order_id": order_id, "tickets": len(tickets)})
    await _after_commit(deps, hold, claim, body, admission, ga_left, now_ms)
    return Replay(201, body)


async def _refused(deps: PurchaseDeps, req: PurchaseInput, claim: Claim, hold: Hold, charge: Charge,
                   gateway: str, exc: CommitRefused) -> Replay:
    user_id = req.principal.id
    await _refund(deps, user_id, charge, gateway, exc.reason)
    if exc.reason == "idempotent_duplicate":
        replay = await _replay_committed(deps, user_id, claim)
        if replay is not None:
            return replay
    if exc.reason in ("seat_sold", "ga_sold_out"):
        deps.metrics.oversell_prevented_total.inc()
        logger.warning("oversell_prevented", extra={"event_id": hold.event_id, "hold_id": hold.id})
        raise SeatsAlreadySold("these seats were sold to someone else; your payment was refunded",
                               conflicts=hold.seats)
    if exc.reason == "hold_bought":
        raise HoldAlreadySold("the hold has already been purchased; this payment was refunded")
    if exc.reason == "account_limit":
        raise AccountTicketLimit(
            f"at most {deps.settings.max_tickets_per_account_per_event} tickets per account for this event; "
            "your payment was refunded")
    if exc.reason == "discount_exhausted":
        raise DiscountExhausted("the discount code was used up meanwhile; your payment was refunded")
    raise DependencyUnavailable("the event changed during the purchase; your payment was refunded",
                                retry_after_s=1)


async def _refund(deps: PurchaseDeps, user_id: str, charge: Charge, gateway: str, reason: str) -> None:
    refund_id = None
    if charge.amount > 0:
        refund_id = await deps.payments.refund(charge, idempotency_key="refund:" + charge.id)
    deps.metrics.refunds_total.labels(reason).inc()
    logger.warning("charge_refunded" if refund_id or not charge.amount else "refund_failed",
                   extra={"charge_id": charge.id, "reason": reason})
    await deps.orders.record_failed_charge(user_id=user_id, gateway=gateway, charge_id=charge.id,
                                           amount=charge.amount, currency=charge.currency, reason=reason,
                                           refund_id=refund_id or ("none" if not charge.amount else None))


PAYMENT_FAILED_NAMESPACE = uuid.UUID("9c8e0f3a-5b1d-4e7a-8f2c-6d4b3a2e1f07")


async def _announce_payment_failed(deps: PurchaseDeps, hold: Hold, user_id: str, amount: int, claim: Claim,
                                   exc: StagedoorError) -> None:
    """One PaymentFailed outbox row per purchase attempt (the Idempotency-Key claim's nonce keys it);
    best-effort: a database outage must not turn the payment answer into a 5xx."""
    reason = {"payment-declined": "declined", "payment-gateway-unavailable": "unavailable"}.get(
        getattr(exc, "code", ""), "gateway_error")
    payload = {"hold_id": hold.id, "event_id": hold.event_id, "user_id": user_id, "amount": amount,
               "currency": hold.currency, "reason": reason}
    try:
        await deps.orders.announce(str(uuid.uuid5(PAYMENT_FAILED_NAMESPACE, claim.nonce)), "PaymentFailed",
                                   hold.id, _ENCODER.encode(payload))
    except Exception:
        logger.warning("payment_failed_not_announced", extra={"hold_id": hold.id}, exc_info=True)


async def _after_commit(deps: PurchaseDeps, hold: Hold, claim: Claim, body: bytes,
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
