"""The gateway sweep (a worker loop): the gateway's own list of payments compared with our records.

The purchase records a charge before making it and the reconciler (ticketing/orders/reconcile.py)
settles what our records leave open; webhooks tell what happens at the gateway. The sweep is the
check from the other side, for what neither can see: every ``payment_sweep_interval_s`` it lists the
payments the gateway made in a window of time (``PaymentGateway.list_payments``) and, for each that
took money (``succeeded``), reads its key's charge attempt and payments row (ticketing/payments/
sweep_store.py):

- succeeded under one of our keys, with neither an attempt nor a payments row (a charge we never
  recorded), or while the key's records name another payment (a second charge under one key): refunded,
  ``ticketing_payments_unrecorded_total``, an error log line, an alert;
- succeeded, the key's attempt unsettled or failed: the charge recorded on it (a failed one reopens:
  the reconciler completes the order or refunds it), as the webhook does;
- refunded at the gateway (its dashboard), in full or in part, of a confirmed order: the order
  refunded (``OrderRefunded``) or ``amount_refunded`` recorded, as the webhook does;
- refunded less than our payments row says (``refunded`` at our side): flag ``refund_missing`` (the
  organizer e-mailed) and the refund asked again under its own key;
- another amount or currency than the attempt's or the payments row's: flag ``amount_mismatch`` (never
  completed: the reconciler refunds an unsettled one);
- a payment without one of our keys: nothing, it is not stagedoor's.

Windows: from where the last one ended (``gateway_sweeps.swept_until``, migration 0013) minus
``payment_sweep_overlap_s`` to ``payment_sweep_settle_s`` before now (younger payments are still the
purchase's, the fan's 3-D Secure step, the reconciler's); the first reaches
``payment_sweep_lookback_s`` back. At most ``payment_sweep_max_payments`` are listed per run; the
listing's position is kept after every page, so the next run (or another worker, after a restart)
goes on from there. One sweeper at a time holds the gateway's row (a lease). Every action is
idempotent (refund keys ``refund:<payment id>``, compare-and-set statements, one flag per payment and
kind), so a page compared twice changes nothing the second time.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
import uuid
from collections.abc import Callable

import msgspec

from stagedoor.settings import Settings
from stagedoor.tasks import run_every
from ticketing.metrics import TicketingMetrics
from ticketing.payments.charging import Payments
from ticketing.payments.gateway import Charge, GatewayPayment, RefundRefused
from ticketing.payments.sweep_store import Recorded, SweepStore
from ticketing.payments.webhook_effects import effect_id
from ticketing.payments.webhook_store import WebhookStore

logger = logging.getLogger(__name__)

PAGE = 100
FIRST_RUN_DELAY_S = 30.0  # after the worker starts (its other loops first; a restart loop still sweeps)
LEASE_S = 600.0  # a sweeper that dies holds the gateway's row this long (each page extends it)
OUR_KEY = re.compile(r"^[0-9a-f]{40}:[0-9]+$")  # <purchase_key>:<seq> (ticketing/payments/records.py)


class SweepRun(msgspec.Struct, kw_only=True):
    leased: bool = False
    pages: int = 0
    listed: int = 0
    window_done: bool = False
    findings: dict[str, int] = msgspec.field(default_factory=dict)


class GatewaySweep:
    def __init__(self, payments: Payments, store: SweepStore, webhooks: WebhookStore, metrics: TicketingMetrics,
                 settings: Settings, wall: Callable[[], float] = time.time) -> None:
        self.payments = payments
        self.store = store
        self.webhooks = webhooks
        self.metrics = metrics
        self.settings = settings
        self.wall = wall  # the gateway's clock is the wall clock (payments' created times)

    async def run(self) -> None:
        interval = self.settings.payment_sweep_interval_s
        await run_every(interval, self.run_once, "payment_sweep_failed", first_delay_s=min(interval, FIRST_RUN_DELAY_S))

    async def run_once(self) -> SweepRun:
        s, run = self.settings, SweepRun()
        gateway, token, now = self.payments.gateway_name, uuid.uuid4(), int(self.wall())
        state = await self.store.lease(gateway, token, now - s.payment_sweep_settle_s - s.payment_sweep_lookback_s,
                                       LEASE_S)
        if state is None:
            return run  # another worker is sweeping
        run.leased = True
        window_from: int | None = state.window_from
        window_to: int | None = state.window_to
        try:
            position = state.position
            if window_from is None or window_to is None:
                window_to = now - s.payment_sweep_settle_s
                if window_to <= state.swept_until:
                    return run
                window_from = max(0, state.swept_until - s.payment_sweep_overlap_s)
                if not await self.store.open_window(gateway, token, window_from, window_to):
                    return run  # the lease ran out meanwhile
                position = None
            for _ in range(math.ceil(s.payment_sweep_max_payments / PAGE)):
                page = await self.payments.list_payments(created_from=window_from, created_to=window_to,
                                                         after=position, limit=PAGE)
                run.pages += 1
                run.listed += len(page.payments)
                self.metrics.payment_sweep_listed_total.inc(len(page.payments))
                await self._compare(page.payments, run)
                if page.next is None:
                    if await self.store.finish_window(gateway, token) is not None:
                        run.window_done = True
                        self.metrics.payment_sweep_last_success_seconds.set(self.wall())
                    break
                position = page.next
                if not await self.store.advance(gateway, token, position, LEASE_S):
                    break  # the lease ran out and another sweeper took over
        finally:
            await self.store.release(gateway, token)
            if run.findings or run.window_done:
                logger.info("payment_sweep_run", extra={"gateway": gateway, "window_from": window_from,
                                                        "window_to": window_to, "pages": run.pages,
                                                        "listed": run.listed, "window_done": run.window_done,
                                                        "findings": run.findings})
        return run

    async def _compare(self, listed: list[GatewayPayment], run: SweepRun) -> None:
        charged = [p for p in listed if p.status == "succeeded"]
        recorded = await self.store.recorded([(p.id, p.gateway_key) for p in charged])
        for payment in charged:
            for finding in await self.check(payment, recorded.get(payment.id, Recorded())):
                run.findings[finding] = run.findings.get(finding, 0) + 1
                self.metrics.payment_sweep_findings_total.labels(finding).inc()

    async def check(self, p: GatewayPayment, r: Recorded) -> list[str]:
        """What one payment that took money finds against our records (and what was done about it)."""
        if r.payment_status is not None:
            if r.payment_charge_id != p.id:  # the key's charge is another payment: this one is extra
                return await self._unrecorded(p, "duplicate_charge")
            return await self._settled(p, r)
        if r.attempt_state is not None:
            if r.attempt_charge_id is not None and r.attempt_charge_id != p.id:
                return await self._unrecorded(p, "duplicate_charge")
            return await self._unsettled(p, r)
        if p.gateway_key is None or not OUR_KEY.match(p.gateway_key):
            return []  # not made by stagedoor (other sales on the same gateway account)
        return await self._unrecorded(p, "unrecorded")

    async def _unrecorded(self, p: GatewayPayment, finding: str) -> list[str]:
        """A charge no order will ever use and no record will ever settle: refunded (or only reported)."""
        if p.amount_refunded >= p.amount:
            return []  # paid back already (by an earlier sweep, or at the gateway)
        if not self.settings.payment_sweep_refund_unrecorded:
            outcome = "left"
        else:
            try:
                refund_id = await self.payments.refund(Charge(id=p.id, amount=p.amount, currency=p.currency),
                                                       idempotency_key="refund:" + p.id)
            except RefundRefused:
                refund_id = None
            outcome = "refunded" if refund_id is not None else "refund_failed"
            if refund_id is not None:
                self.metrics.refunds_total.labels(finding).inc()
        self.metrics.payments_unrecorded_total.labels(outcome).inc()
        logger.error("payment_unrecorded", extra={"finding": finding, "outcome": outcome, "charge_id": p.id,
                                                  "gateway_key": p.gateway_key, "amount": p.amount,
                                                  "currency": p.currency, "created_at": p.created})
        return [finding]

    async def _unsettled(self, p: GatewayPayment, r: Recorded) -> list[str]:
        """The key's attempt is open (or failed): the charge is recorded on it, as the webhook does."""
        assert p.gateway_key is not None  # an attempt was found by it
        findings = []
        if r.attempt_amount is not None and not _same_money(p, r.attempt_amount, r.attempt_currency):
            findings += await self._flag("amount_mismatch", p, p.gateway_key, None, r.attempt_event_id,
                                         expected=(r.attempt_amount, r.attempt_currency or ""))
        before = await self.webhooks.record_charge(p.gateway_key, p.id, dt.datetime.fromtimestamp(p.created, dt.UTC))
        if before == "failed":  # charged after all: the reconciler completes the order or refunds it
            logger.warning("payment_sweep_reopened", extra={"gateway_key": p.gateway_key, "charge_id": p.id})
            findings.append("reopened")
        elif before is not None and r.attempt_charge_id is None:
            findings.append("charge_recorded")
        return findings

    async def _settled(self, p: GatewayPayment, r: Recorded) -> list[str]:
        amount, refunded = r.payment_amount or 0, r.amount_refunded or 0
        findings: list[str] = []
        if not _same_money(p, amount, r.payment_currency):
            findings += await self._flag("amount_mismatch", p, r.payment_key, r.order_id, r.payment_event_id,
                                         expected=(amount, r.payment_currency or ""))
        if r.payment_status == "succeeded":
            if p.amount_refunded > refunded:
                findings += await self._refunded_outside(p, r, amount)
            elif p.amount_refunded < refunded:
                findings += await self._flag("refund_missing", p, r.payment_key, r.order_id, r.payment_event_id,
                                             expected=(refunded, r.payment_currency or ""))
        elif r.payment_status == "refunded" and p.amount_refunded < amount:
            findings += await self._flag("refund_missing", p, r.payment_key, r.order_id, r.payment_event_id,
                                         expected=(amount, r.payment_currency or ""))
            # Asked again under the refund's own key: made now if the gateway never had it, else answered
            # with the refund it has (a person looks at why it did not pay out).
            try:
                await self.payments.refund(Charge(id=p.id, amount=amount, currency=p.currency),
                                           idempotency_key="refund:" + p.id)
            except RefundRefused:
                pass  # logged by Payments.refund; the flag stands
        return findings

    async def _refunded_outside(self, p: GatewayPayment, r: Recorded, amount: int) -> list[str]:
        """Money returned at the gateway (its dashboard) of a confirmed order: recorded as the
        ``charge.refunded`` webhook records it (ticketing/payments/webhook_effects.py)."""
        if p.amount_refunded >= amount and r.order_id is not None and r.order_status == "confirmed":
            done = await self.webhooks.refund_order(r.order_id, "gateway:" + p.id, amount,
                                                    effect_id("order_refunded", "sweep:" + p.id),
                                                    "refunded_at_gateway")
            if done:
                self.metrics.refunds_total.labels("refunded_at_gateway").inc()
                logger.warning("payment_refunded_at_gateway", extra={"order_id": r.order_id, "charge_id": p.id})
                return ["refunded_outside"]
            return []
        if r.payment_key is not None and p.amount_refunded < amount and \
                await self.webhooks.refund_part(r.payment_key, p.amount_refunded):
            return ["partially_refunded_outside"]
        return []

    async def _flag(self, kind: str, p: GatewayPayment, gateway_key: str | None, order_id: str | None,
                    event_id: int | None, expected: tuple[int, str]) -> list[str]:
        """A payment flag for a person (payment_flags, the organizer e-mailed), once per payment and kind."""
        logger.warning("payment_sweep_mismatch", extra={"kind": kind, "charge_id": p.id, "gateway_key": gateway_key,
                                                        "order_id": order_id})
        if event_id is None:  # a row from before payments knew their event: the log line is all
            return [kind]
        source = "sweep:" + p.id
        details: dict[str, object] = {"gateway_object": p.id, "amount": p.amount, "currency": p.currency,
                                      "amount_refunded": p.amount_refunded, "status": p.status,
                                      "expected_amount": expected[0], "expected_currency": expected[1]}
        flag_id = await self.webhooks.flag(kind=kind, source_event=source, gateway=self.payments.gateway_name,
                                           gateway_key=gateway_key, charge_id=p.id, order_id=order_id,
                                           event_id=event_id, details=details,
                                           outbox_event_id=effect_id(f"flag:{kind}", source))
        if flag_id is not None:
            self.metrics.payment_flags_total.labels(kind).inc()
        return [kind]


def _same_money(p: GatewayPayment, amount: int, currency: str | None) -> bool:
    return p.amount == amount and p.currency.upper() == (currency or "").strip().upper()
