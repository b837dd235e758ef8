"""The purchase: ``POST /api/holds/{id}/purchase`` from Idempotency-Key to tickets.

    claim the Idempotency-Key (Redis; a duplicate replays or gets 409 + Retry-After)
    -> the hold is the caller's and live; gated event: a valid admission token
    -> lock the hold for the payment window (it cannot expire mid-charge; refused when the
       event is cancelled) and, concurrently, record the charge attempt ``pending`` with the
       deterministic gateway idempotency key (paid orders only; ticketing/payments/records.py)
    -> charge with that key (retries + circuit breaker, ticketing/payments/charging.py): a
       decline marks the attempt failed; no answer marks it unknown
    -> ONE PostgreSQL statement: order, tickets, payments row (the attempt settled), outbox OrderConfirmed,
       idempotency record, GA / account / discount counters; refused unless the event is on
       sale (ticketing/orders/store.py)
    -> confirm sold in Redis, remember the answer, tell admission the shopper is done,
       announce a sell-out.

Charged once: a retry with the same Idempotency-Key reuses the pending/unknown attempt and its
gateway key, so the gateway answers with the charge it made. A refund needs the key's payments
row claimed first, which the commit inserts too: a charge whose order committed is never refunded. A
connection lost during the commit is an unknown outcome: no refund, 503 + Retry-After; the
retry replays the order or completes it with the same charge, and the worker's reconciler
(ticketing/orders/reconcile.py) settles what nobody retries.

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
from typing import Any

import msgspec

from rooms.sessions import room_from_reply
from stagedoor.admission_tokens import AdmissionClaims, verify_admission_token
from stagedoor.auth import Principal
from stagedoor.bus import BusEmitter
from stagedoor.errors import DependencyUnavailable, StagedoorError
from stagedoor.keys import KeyRing
from stagedoor.policy import Action, Resource, authorize
from stagedoor.settings import Settings
from ticketing.holds.errors import EventNotOnSale, HoldAlreadySold, HoldNotFound, NotHoldOwner
from ticketing.holds.shopper_session import AdmissionHooks, ShopperSessionEnded
from ticketing.holds.store import HoldStore
from ticketing.holds.types import Hold, event_of_hold_id
from ticketing.metrics import TicketingMetrics
from ticketing.orders.discounts import discount_amount, find_applicable
from ticketing.orders.errors import (
    AccountTicketLimit,
    DiscountExhausted,
    PaymentRefunded,
    PurchaseInProgress,
    SeatsAlreadySold,
)
from ticketing.orders.idempotency import Claim, IdempotencyStore, Replay, check_replay, fingerprint, validate_key
from ticketing.orders.orders import PurchaseRequest, PurchaseResponse, TicketOut
from ticketing.orders.sold_out import SoldOutWatch
from ticketing.orders.store import CommitOutcomeUnknown, CommitRefused, NewOrder, NewTicket, OrderStore
from ticketing.payments.charging import Payments
from ticketing.payments.errors import PaymentDeclined
from ticketing.payments.gateway import Charge
from ticketing.payments.records import NewPayment, Opened, PaymentRecords, purchase_key
from ticketing.payments.refunding import Refunder
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
    records: PaymentRecords
    emitter: BusEmitter | None = None  # best-effort ShopperFinished (stagedoor/bus.py)

    @property
    def refunder(self) -> Refunder:
        return Refunder(self.payments, self.records, self.metrics, base_s=self.settings.refund_retry_base_s,
                        max_s=self.settings.refund_retry_max_s)


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
        total = subtotal - off
        held = hold  # as it was before the payment window (a failed charge goes back to it)
        new_payment = None if total <= 0 else NewPayment(
            purchase_key=purchase_key(user_id, claim.key, hold.id), user_id=user_id,
            gateway=deps.settings.payment_gateway, hold_id=hold.id, event_id=int(event_id),
            idempotency_key=claim.key, fingerprint=claim.fingerprint, email=req.body.email, subtotal=subtotal,
            discount=off, discount_code_id=discount.id if discount else None, amount=total, currency=hold.currency)
        hold, opened = await _lock_and_open(deps, held, new_payment, now_ms)
    except (HoldNotFound, HoldAlreadySold, EventNotOnSale):
        # Bought already (this key, maybe before Redis lost its data)? Then replay that answer.
        replay = await _replay_committed(deps, user_id, claim)
        if replay is not None:
            return replay
        raise

    if opened is not None and opened.status == "succeeded":
        # This purchase committed before (its answer was lost with the connection or with Redis).
        replay = await _replay_committed(deps, user_id, claim)
        if replay is None:
            raise HoldAlreadySold("the hold has already been purchased")
        await _mirror_sold(deps, hold, now_ms)
        return replay

    if opened is not None:
        try:
            charge = await deps.payments.charge(amount=total, currency=hold.currency,
                                                token=req.body.payment.token, idempotency_key=opened.gateway_key)
        except PaymentDeclined as exc:  # the gateway's answer: nothing was charged under this key
            await _record(deps.records.mark_failed(opened.gateway_key, "declined"), opened)
            await _unlock(deps, held)
            await _announce_payment_failed(deps, hold, user_id, total, claim, exc)
            raise
        except StagedoorError as exc:  # no answer (timeouts, gateway errors, breaker): maybe charged
            await _record(deps.records.mark_unknown(opened.gateway_key, exc.code), opened)
            await _announce_payment_failed(deps, hold, user_id, total, claim, exc)
            raise
        gateway: str = deps.settings.payment_gateway
    else:
        charge = Charge(id="free_" + claim.nonce, amount=0, currency=hold.currency)
        gateway = "none"

    spec = OrderSpec(user_id=user_id, email=req.body.email, subtotal=subtotal, discount=off,
                     discount_code_id=discount.id if discount else None, idempotency_key=claim.key,
                     fingerprint=claim.fingerprint, gateway=gateway, charge=charge,
                     gateway_key=opened.gateway_key if opened is not None else None)
    if opened is not None and charge.amount != total:  # the key's earlier charge was for another amount
        await _refund_charge(deps, spec, "amount_mismatch")
        raise PaymentRefunded("this Idempotency-Key was charged another amount earlier; that charge is being "
                              "refunded: buy again with a new Idempotency-Key")
    order, body = build_order(deps, hold, spec)
    try:
        ga_left = await deps.orders.commit_purchase(order)
    except CommitRefused as exc:
        return await _refused(deps, req, claim, hold, spec, exc)
    except CommitOutcomeUnknown:
        # The statement may have committed: never refund now. The same Idempotency-Key replays the
        # order or completes it with the same charge; the worker's reconciler settles it otherwise.
        if opened is not None:
            await _record(deps.records.mark_unknown(opened.gateway_key, "commit_outcome_unknown", charge.id), opened)
        logger.warning("commit_outcome_unknown", extra={"event_id": event_id, "hold_id": hold.id,
                                                        "charge_id": charge.id})
        raise
    except DependencyUnavailable:  # nothing was written: the charge goes back
        await _refund_charge(deps, spec, "database_unavailable")
        raise

    deps.metrics.orders_confirmed_total.inc()
    deps.metrics.purchases_total.labels("confirmed").inc()
    logger.info("order_confirmed", extra={"event_id": event_id, "order_id": order.id, "tickets": len(order.tickets)})
    await after_commit(deps, hold, claim, body, admission, ga_left, now_ms)
    return Replay(201, body)


async def _lock_and_open(deps: PurchaseDeps, held: Hold, new_payment: NewPayment | None,
                         now_ms: int) -> tuple[Hold, Opened | None]:
    """Lock the hold for the payment window and open the payments row, concurrently (one Redis
    script and one PostgreSQL statement in flight together). Free orders only lock."""
    window_ms = deps.settings.payment_window_s * 1000
    if new_payment is None:
        return await deps.holds.lock_for_payment(held, now_ms, window_ms), None
    locked, opened = await asyncio.gather(deps.holds.lock_for_payment(held, now_ms, window_ms),
                                          deps.records.open(new_payment), return_exceptions=True)
    if isinstance(opened, BaseException):
        if not isinstance(locked, BaseException):
            await _unlock(deps, held)
        if isinstance(opened, StagedoorError):
            raise opened
        raise DependencyUnavailable("the payment records are unreachable; nothing was charged",
                                    retry_after_s=1) from opened
    if opened is None:  # a concurrent attempt with this key opened it this very moment
        if not isinstance(locked, BaseException):
            await _unlock(deps, held)
        raise PurchaseInProgress("a purchase with this Idempotency-Key is in progress; retry shortly",
                                 retry_after_s=1)
    if isinstance(locked, BaseException):
        if opened.inserted:  # nothing will be charged under this new key
            await _record(deps.records.mark_failed(opened.gateway_key, "hold_not_locked"), opened)
        raise locked
    return locked, opened


async def _record(update: Any, opened: Opened) -> None:
    """Best effort: a row left pending is settled by the reconciler after the payment window."""
    try:
        await update
    except Exception:
        logger.warning("payment_state_not_recorded", extra={"gateway_key": opened.gateway_key}, exc_info=True)


async def _refund_charge(deps: PurchaseDeps, spec: OrderSpec, reason: str) -> bool:
    """Refund the purchase's charge if its row can be claimed (pending/unknown -> refunding); False
    when it cannot (settled meanwhile, e.g. its order committed: nothing is refunded then)."""
    if spec.gateway_key is None or spec.charge.amount <= 0:
        return True  # free: nothing to give back
    try:
        return await deps.refunder.claim_and_refund(spec.gateway_key, spec.charge, reason)
    except Exception:  # PostgreSQL down: the row stays pending/unknown; the reconciler settles it
        logger.warning("refund_deferred", extra={"charge_id": spec.charge.id, "reason": reason}, exc_info=True)
        return False


def build_order(deps: PurchaseDeps, hold: Hold, spec: OrderSpec) -> tuple[NewOrder, bytes]:
    """The order of a locked hold: tickets with signed codes, the answer body, the outbox payload."""
    event_id = hold.event_id
    order_id = str(uuid.uuid4())
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


async def _refused(deps: PurchaseDeps, req: PurchaseInput, claim: Claim, hold: Hold, spec: OrderSpec,
                   exc: CommitRefused) -> Replay:
    user_id = req.principal.id
    if not await _refund_charge(deps, spec, exc.reason) or exc.reason in ("idempotent_duplicate",
                                                                          "payment_settled"):
        # Not refunded (the row was settled: maybe this very purchase committed) or this key committed
        # meanwhile: replay what is recorded for the key.
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
    if exc.reason == "event_not_on_sale":
        logger.warning("purchase_refused_event_not_on_sale", extra={"event_id": hold.event_id, "hold_id": hold.id})
        raise EventNotOnSale("the event is no longer on sale (cancelled); your payment was refunded")
    if exc.reason == "payment_settled":
        raise PaymentRefunded("this payment was settled meanwhile (refunded); buy again with a new Idempotency-Key")
    raise DependencyUnavailable("the event changed during the purchase; your payment was refunded",
                                retry_after_s=1)


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


async def _mirror_sold(deps: PurchaseDeps, hold: Hold, now_ms: int) -> None:
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
