"""The payment reconciler (a worker loop): settles charges nobody finished, retries failed refunds.

Every ``payment_reconcile_interval_s``:

1. ``pending`` and ``unknown`` charge attempts with no payments row, untouched for ``payment_window_s``
   (the purchase that wrote them is over: its gateway calls are bounded by their timeouts, well inside
   the window):
   - an order committed for the purchase's Idempotency-Key or its hold (checked first, in
     PostgreSQL) with this very charge -> ``succeeded``;
   - the gateway made no charge under the row's key (``PaymentGateway.lookup``) -> ``failed``; but
     first, when the attempt names a payment at the gateway (``charge_id``: a PaymentIntent waiting
     for the fan's 3-D Secure step), that payment is cancelled (``PaymentGateway.cancel``), so a fan
     who finishes the bank's step later can no longer be charged for an order that will never be
     made (``cancelled``). A cancel that finds the payment succeeded meanwhile (AlreadyCharged)
     settles it as the charge it is: the order completed, or the charge refunded;
   - charged, and an order for the hold committed with another charge -> refund this one;
   - charged and no order: if the hold is still the fan's and can be locked (the purchase's own
     ``lock_for_payment``; refused when the event was cancelled), the order is completed with the
     purchase's own ``build_order`` and commit statement; otherwise the charge is refunded.
   The gateway not answering leaves the attempt for the next round. Lookups, cancels and refunds go
   to the gateway that took the charge (the attempt's ``gateway``). A refund always claims the
   charge first by inserting the gateway key's payments row (``refunding``), and the commit statement
   inserts that same unique key's row (``succeeded``): a late commit and a refund can never both win,
   so a charge whose commit outcome is unknown is never refunded while that commit can still land.
2. ``refunding``/``refund_failed`` rows whose ``next_attempt_at`` is due: refund again (backoff with
   jitter between attempts, ticketing/payments/refunding.py).
Both reads lease their rows (``FOR UPDATE SKIP LOCKED``, then a moved timestamp): reconcilers in
several workers never work on one row at once. A fan's retry that reuses a pending/unknown row
touches it, and the reconciler's ``failed``, ``succeeded`` and refund claim require the row as it
leased it: a lookup that saw no charge cannot fail a row whose retry is charging right then.
3. ``ticketing_refunds_owed`` is set to the rows still owed a refund (alerted in ops/prometheus).
4. Failed attempts older than a week are forgotten (``PaymentRecords.prune_failed``).
"""

from __future__ import annotations

import logging

import msgspec

from stagedoor.clock import Clock
from stagedoor.errors import DependencyUnavailable, StagedoorError
from stagedoor.tasks import run_every
from ticketing.holds.errors import HoldNotFound
from ticketing.orders.order_commit import OrderSpec, after_commit, build_order
from ticketing.orders.purchase_deps import PurchaseDeps
from ticketing.orders.store import CommitRefused
from ticketing.payments.gateway import AlreadyCharged, Charge
from ticketing.payments.records import PaymentRow
from ticketing.payments.refunding import CLAIM_GRACE_S

logger = logging.getLogger(__name__)


class ReconcileRun(msgspec.Struct, kw_only=True):
    succeeded: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    refunded: int = 0
    refund_failed: int = 0
    kept: int = 0


class Reconciler:
    def __init__(self, deps: PurchaseDeps, clock: Clock) -> None:
        self.deps = deps
        self.clock = clock

    async def run(self) -> None:
        await run_every(self.deps.settings.payment_reconcile_interval_s, self.run_once, "payment_reconcile_failed")

    async def run_once(self) -> ReconcileRun:
        deps, run = self.deps, ReconcileRun()
        batch = deps.settings.payment_reconcile_batch
        for row in await deps.records.stale(deps.settings.payment_window_s, batch):
            outcome = await self.settle(row)
            setattr(run, outcome, getattr(run, outcome) + 1)
            deps.metrics.payments_reconciled_total.labels(outcome).inc()
        for row in await deps.records.refunds_due(batch, CLAIM_GRACE_S):
            if row.charge_id is None:  # pragma: no cover - a refund is only claimed with its charge id
                continue
            charge = Charge(id=row.charge_id, amount=row.amount, currency=row.currency)
            if await deps.refunder.refund_claimed(row.gateway_key, charge, row.reason or "retry",
                                                  gateway=row.gateway) is not None:
                run.refunded += 1
            else:
                run.refund_failed += 1
        deps.metrics.refunds_owed.set(await deps.records.refunds_owed())
        await deps.records.prune_failed()
        if any(msgspec.structs.astuple(run)):
            logger.info("payments_reconciled", extra=msgspec.structs.asdict(run))
        return run

    async def settle(self, row: PaymentRow) -> str:
        """Settle one pending/unknown row; returns the outcome (a ReconcileRun field)."""
        deps = self.deps
        by_key, by_hold, hold_charge_id = await deps.orders.order_of_purchase(row.user_id, row.idempotency_key,
                                                                             row.hold_id)
        try:
            charge = await deps.payments.lookup(row.gateway_key, gateway=row.gateway)
        except Exception as exc:  # the gateway does not say: ask again next round
            logger.warning("payment_lookup_failed", extra={"gateway_key": row.gateway_key,
                                                           "error": type(exc).__name__})
            return "kept"
        outcome = "failed"
        if charge is None and row.charge_id is not None:
            # A payment the gateway still holds open (3-D Secure the fan never finished): cancel it
            # before giving up on it, so that it can never take money once nothing waits for it.
            try:
                await deps.payments.cancel(row.charge_id, gateway=row.gateway)
                outcome = "cancelled"
                logger.info("payment_intent_cancelled", extra={"gateway_key": row.gateway_key,
                                                               "charge_id": row.charge_id})
            except AlreadyCharged as exc:  # the fan finished just now: a charge like any other
                charge = exc.charge
            except Exception as exc:  # the gateway does not say: ask again next round
                logger.warning("payment_cancel_failed", extra={"gateway_key": row.gateway_key,
                                                               "charge_id": row.charge_id,
                                                               "error": type(exc).__name__})
                return "kept"
        if charge is None:
            if not await deps.records.mark_failed(row.gateway_key, "cancelled" if outcome == "cancelled" else
                                                  "no_charge", lease=row.updated_at):
                return "kept"  # a retry reused the row meanwhile: its charge may be on its way
            return outcome
        if by_key is not None or by_hold is not None:
            if hold_charge_id == charge.id and by_hold is not None:
                if await deps.records.mark_succeeded(row.gateway_key, lease=row.updated_at):
                    return "succeeded"
                return "kept"
            return await self._refund(row, charge, "order_exists")  # the hold was bought with another charge
        return await self._complete(row, charge)

    async def _complete(self, row: PaymentRow, charge: Charge) -> str:
        deps = self.deps
        if charge.amount != row.amount or charge.currency.upper() != row.currency.upper():
            return await self._refund(row, charge, "amount_mismatch")
        now_ms = self.clock.now_ms()
        try:
            hold = await deps.holds.get_hold(row.hold_id)
            if hold.user_id != row.user_id:
                raise HoldNotFound("the hold is someone else's")
            hold = await deps.holds.lock_for_payment(hold, now_ms, deps.settings.payment_window_s * 1000)
        except DependencyUnavailable:
            return "kept"
        except StagedoorError as exc:  # gone, expired, released, sold, seat lost, event cancelled
            return await self._refund(row, charge, "hold_lost" if exc.code != "event-not-on-sale" else
                                      "event_not_on_sale")
        spec = OrderSpec(user_id=row.user_id, email=row.email, subtotal=row.subtotal, discount=row.discount,
                         discount_code_id=row.discount_code_id, idempotency_key=row.idempotency_key,
                         fingerprint=row.fingerprint, gateway=row.gateway, charge=charge,
                         gateway_key=row.gateway_key)
        order, body = build_order(deps, hold, spec)
        try:
            ga_left = await deps.orders.commit_purchase(order)
        except CommitRefused as exc:
            return await self._refund(row, charge, exc.reason)
        except DependencyUnavailable:  # also an unknown outcome: the next round sees succeeded or not
            return "kept"
        deps.metrics.orders_confirmed_total.inc()
        logger.info("order_completed_by_reconciler", extra={"event_id": hold.event_id, "order_id": order.id,
                                                            "charge_id": charge.id})
        await after_commit(deps, hold, None, body, None, ga_left, now_ms)
        return "completed"

    async def _refund(self, row: PaymentRow, charge: Charge, reason: str) -> str:
        deps = self.deps
        refunder = deps.refunder
        if not await refunder.claim(row.gateway_key, charge, reason, lease=row.updated_at):
            return "kept"  # settled or reused meanwhile (a late commit, a retry): nothing to refund
        refund_id = await refunder.refund_claimed(row.gateway_key, charge, reason, gateway=row.gateway)
        return "refunded" if refund_id is not None else "refund_failed"
