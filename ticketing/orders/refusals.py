"""When the purchase statement refuses after the charge: the charge goes back (if its key can still be
claimed for a refund) and the fan gets the domain error that says why, or the order this very
Idempotency-Key committed meanwhile."""

from __future__ import annotations

import logging

from stagedoor.errors import DependencyUnavailable
from ticketing.holds.errors import EventNotOnSale, HoldAlreadySold
from ticketing.holds.types import Hold
from ticketing.orders.errors import AccountTicketLimit, DiscountExhausted, PaymentRefunded, SeatsAlreadySold
from ticketing.orders.idempotency import Claim, Replay, check_replay
from ticketing.orders.order_commit import OrderSpec
from ticketing.orders.purchase_deps import PurchaseDeps
from ticketing.orders.store import CommitRefused

logger = logging.getLogger(__name__)


async def replay_committed(deps: PurchaseDeps, user_id: str, claim: Claim) -> Replay | None:
    """The answer PostgreSQL recorded for this Idempotency-Key, remembered in Redis again; None if none."""
    stored = await deps.orders.replay(user_id, claim.key)
    if stored is None:
        return None
    replay = check_replay(claim.fingerprint, stored.fingerprint, stored.status, stored.body)
    await deps.idempotency.finish(claim, replay.status, replay.body)
    deps.metrics.purchases_total.labels("replayed").inc()
    return replay


async def refund_charge(deps: PurchaseDeps, spec: OrderSpec, reason: str) -> bool:
    """Refund the purchase's charge if its row can be claimed (pending/unknown -> refunding); False
    when it cannot (settled meanwhile, e.g. its order committed: nothing is refunded then)."""
    if spec.gateway_key is None or spec.charge.amount <= 0:
        return True  # free: nothing to give back
    try:
        return await deps.refunder.claim_and_refund(spec.gateway_key, spec.charge, reason)
    except Exception:  # PostgreSQL down: the row stays pending/unknown; the reconciler settles it
        logger.warning("refund_deferred", extra={"charge_id": spec.charge.id, "reason": reason}, exc_info=True)
        return False


async def refused(deps: PurchaseDeps, user_id: str, claim: Claim, hold: Hold, spec: OrderSpec,
                  exc: CommitRefused) -> Replay:
    """Refund the charge and raise why the statement refused; or replay this key's committed order."""
    if not await refund_charge(deps, spec, exc.reason) or exc.reason in ("idempotent_duplicate",
                                                                          "payment_settled"):
        # Not refunded (the row was settled: maybe this very purchase committed) or this key committed
        # meanwhile: replay what is recorded for the key.
        replay = await replay_committed(deps, user_id, claim)
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
