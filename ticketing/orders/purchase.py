"""The purchase: ``POST /api/holds/{id}/purchase`` from Idempotency-Key to tickets.

    claim the Idempotency-Key (Redis; a duplicate replays or gets 409 + Retry-After)
    -> the hold is the caller's and live; gated event: a valid admission token (not for a
       waiting-list offer's hold: the list was its queue)
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

Beside it: ``order_commit.py`` (the order built from a locked hold, and what follows its commit;
shared with the reconciler), ``refusals.py`` (the statement refused after the charge),
``purchase_deps.py`` (what both work with).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from typing import Any

import msgspec

from rooms.sessions import room_from_reply
from stagedoor.admission_tokens import AdmissionClaims, verify_admission_token
from stagedoor.auth import Principal
from stagedoor.errors import DependencyUnavailable, StagedoorError
from stagedoor.policy import Action, Resource, authorize
from ticketing.holds.errors import EventNotOnSale, HoldAlreadySold, HoldNotFound, NotHoldOwner
from ticketing.holds.shopper_session import ShopperSessionEnded
from ticketing.holds.types import Hold, event_of_hold_id
from ticketing.orders.discounts import discount_amount, find_applicable
from ticketing.orders.errors import PaymentRefunded, PurchaseInProgress
from ticketing.orders.idempotency import Claim, Replay, fingerprint, validate_key
from ticketing.orders.order_commit import OrderSpec, after_commit, build_order, mirror_sold, order_id_of
from ticketing.orders.orders import ActionRequired, PurchaseRequest
from ticketing.orders.purchase_deps import PurchaseDeps
from ticketing.orders.refusals import refund_charge, refused, replay_committed
from ticketing.orders.store import CommitOutcomeUnknown, CommitRefused
from ticketing.payments.errors import PaymentDeclined
from ticketing.payments.gateway import Charge, ChargeRequiresAction
from ticketing.payments.records import NewPayment, Opened, purchase_key

logger = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()


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


def _is_offer(deps: PurchaseDeps, hold_id: str, hold_record: bytes | None) -> bool:
    """A waiting-list offer's hold (docs/waitlist.md) is bought without an admission token: the list
    was its queue. Only lua/hold_for_offer.lua writes such a record, for the fan it offers to."""
    return hold_record is not None and deps.holds.hold_from_record(hold_id, hold_record).offer is not None


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


async def _purchase_claimed(deps: PurchaseDeps, req: PurchaseInput, claim: Claim, event_id: str,
                            room: str | None, hold_record: bytes | None,
                            session: tuple[AdmissionClaims, bytes | str | float | None] | None) -> Replay:
    user_id, now_ms = req.principal.id, req.now_ms
    admission: AdmissionClaims | None = None
    if room is not None and not _is_offer(deps, req.hold_id, hold_record):
        admission = verify_admission_token(deps.keyring, req.admission_token, event_id)
        if session is not None:  # a valid token always has its session read
            try:
                deps.admission.require_active(session[0], session[1], now_ms)
            except ShopperSessionEnded:  # finished by this very purchase (a retry)? Then replay it.
                replay = await replay_committed(deps, user_id, claim)
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
        replay = await replay_committed(deps, user_id, claim)
        if replay is not None:
            return replay
        raise

    if opened is not None and opened.status == "succeeded":
        # This purchase committed before (its answer was lost with the connection or with Redis).
        replay = await replay_committed(deps, user_id, claim)
        if replay is None:
            raise HoldAlreadySold("the hold has already been purchased")
        await mirror_sold(deps, hold, now_ms)
        return replay

    if opened is not None:
        try:
            charge = await deps.payments.charge(
                amount=total, currency=hold.currency, token=req.body.payment.reference,
                idempotency_key=opened.gateway_key, intent_id=opened.charge_id,
                metadata={"hold_id": hold.id, "event_id": event_id, "order_id": order_id_of(opened.gateway_key)})
        except ChargeRequiresAction as action:  # the fan's bank asks for 3-D Secure: 202, the hold stays locked
            return await _requires_action(deps, claim, hold, opened, action)
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
    if opened is not None and (charge.amount != total or charge.currency.upper() != hold.currency.upper()):
        # the gateway charged another amount than this order's (e.g. the key's earlier charge)
        await refund_charge(deps, spec, "amount_mismatch")
        raise PaymentRefunded("the charge under this Idempotency-Key was for another amount; it is being "
                              "refunded: buy again with a new Idempotency-Key")
    order, body = build_order(deps, hold, spec)
    try:
        ga_left = await deps.orders.commit_purchase(order)
    except CommitRefused as exc:
        return await refused(deps, req.principal.id, claim, hold, spec, exc)
    except CommitOutcomeUnknown:
        # The statement may have committed: never refund now. The same Idempotency-Key replays the
        # order or completes it with the same charge; the worker's reconciler settles it otherwise.
        if opened is not None:
            await _record(deps.records.mark_unknown(opened.gateway_key, "commit_outcome_unknown", charge.id), opened)
        logger.warning("commit_outcome_unknown", extra={"event_id": event_id, "hold_id": hold.id,
                                                        "charge_id": charge.id})
        raise
    except DependencyUnavailable:  # nothing was written: the charge goes back
        await refund_charge(deps, spec, "database_unavailable")
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


async def _requires_action(deps: PurchaseDeps, claim: Claim, hold: Hold, opened: Opened,
                           action: ChargeRequiresAction) -> Replay:
    """Answer 202 with what the page needs to authenticate the fan. The attempt remembers the payment intent
    and the Idempotency-Key is let go, so the same request again continues that intent (201, 402 or 202
    again); the hold stays locked for the payment window. A fan who never comes back: the reconciler
    settles the attempt after the window."""
    if not await deps.records.note_intent(opened.gateway_key, action.intent_id):
        # the attempt was settled meanwhile (the reconciler): this intent is not ours to continue
        raise PurchaseInProgress("this purchase is being settled; retry shortly", retry_after_s=1)
    await _abandon(deps, claim)
    deps.metrics.purchases_total.labels("requires_action").inc()
    logger.info("payment_requires_action", extra={"event_id": hold.event_id, "hold_id": hold.id,
                                                  "intent_id": action.intent_id})
    return Replay(202, _ENCODER.encode(ActionRequired(client_secret=action.client_secret,
                                                      payment_intent=action.intent_id, hold_id=hold.id)))


async def _record(update: Any, opened: Opened) -> None:
    """Best effort: a row left pending is settled by the reconciler after the payment window."""
    try:
        await update
    except Exception:
        logger.warning("payment_state_not_recorded", extra={"gateway_key": opened.gateway_key}, exc_info=True)


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


