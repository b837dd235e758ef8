"""Refunding a charge whose payments row was claimed for a refund (``refunding``), recorded either way.

- The gateway confirmed it: the row becomes ``refunded`` and ``ticketing_refunds_total{reason}`` counts
  it (that counter counts only refunds the gateway confirmed).
- It did not: the row becomes ``refund_failed`` with ``attempts`` + 1 and ``next_attempt_at`` after an
  exponential backoff with jitter (``refund_retry_base_s`` doubling, capped at ``refund_retry_max_s``,
  each delay drawn in [d/2, d]); ``ticketing_refunds_failed_total{reason}`` counts the failed attempt
  and a ``refund_failed`` error line is logged. The worker retries due rows (ticketing/orders/reconcile.py).

The gateway's refund idempotency key is ``refund:<charge id>``: a retry after a lost answer cannot
refund twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import random

from ticketing.metrics import TicketingMetrics
from ticketing.payments.charging import Payments
from ticketing.payments.gateway import Charge
from ticketing.payments.records import PaymentRecords

logger = logging.getLogger(__name__)

# A claimed refund that never reports back (the process died mid-refund) is retried after this.
CLAIM_GRACE_S = 120.0


def refund_backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before the next try after ``attempts`` failed ones: min(max, base * 2^(attempts-1)),
    jittered into [d/2, d] so that many failed refunds do not retry in step."""
    delay = min(max_s, base_s * 2.0 ** max(0, attempts - 1))
    jitter: float = (rng or random.Random()).uniform(0, delay / 2)
    return delay / 2 + jitter


class Refunder:
    def __init__(self, payments: Payments, records: PaymentRecords, metrics: TicketingMetrics, *,
                 base_s: float, max_s: float) -> None:
        self.payments = payments
        self.records = records
        self.metrics = metrics
        self.base_s = base_s
        self.max_s = max_s

    async def refund_claimed(self, gateway_key: str, charge: Charge, reason: str,
                             gateway: str | None = None) -> str | None:
        """Refund a charge whose row this caller claimed, through the gateway that took it (``gateway``,
        the name its row records; None: the configured one); the refund id, or None (recorded for retry)."""
        refund_id = await self.payments.refund(charge, idempotency_key="refund:" + charge.id, gateway=gateway)
        if refund_id is not None:
            self.metrics.refunds_total.labels(reason).inc()
            logger.warning("charge_refunded", extra={"charge_id": charge.id, "reason": reason})
            try:
                await self.records.mark_refunded(gateway_key, refund_id)
            except Exception:  # the row stays refunding: the retry asks again (same refund key, no-op)
                logger.warning("refund_not_recorded", extra={"charge_id": charge.id}, exc_info=True)
            return refund_id
        self.metrics.refunds_failed_total.labels(reason).inc()
        attempts: int | None = None
        try:
            # the first failed attempt waits base_s, then 2 base_s, 4 base_s ... (jittered)
            row = await self.records.get(gateway_key)
            done = row.attempts + 1 if row is not None else 1
            attempts = await self.records.mark_refund_failed(
                gateway_key, "the gateway did not confirm the refund",
                refund_backoff_s(done, self.base_s, self.max_s))
        except Exception:  # the row stays refunding; its next_attempt_at brings it back to the retry loop
            logger.warning("refund_failure_not_recorded", extra={"charge_id": charge.id}, exc_info=True)
        logger.error("refund_failed", extra={"charge_id": charge.id, "reason": reason, "attempts": attempts,
                                             "amount": charge.amount, "currency": charge.currency})
        return None

    async def claim(self, gateway_key: str, charge: Charge, reason: str, lease: dt.datetime | None = None) -> bool:
        """pending/unknown -> refunding; False, and nothing to do, when the row was settled meanwhile
        (its order committed, or someone else claimed the refund) or, given the reconciler's
        ``lease``, touched since by a retry."""
        if await self.records.claim_refund(gateway_key, charge_id=charge.id, amount=charge.amount,
                                           reason=reason, retry_in_s=CLAIM_GRACE_S, lease=lease):
            return True
        logger.info("refund_not_claimed", extra={"charge_id": charge.id, "reason": reason})
        return False

    async def claim_and_refund(self, gateway_key: str, charge: Charge, reason: str) -> bool:
        """Claim the row for a refund and refund (recorded either way); False when not claimed."""
        if not await self.claim(gateway_key, charge, reason):
            return False
        await self.refund_claimed(gateway_key, charge, reason)
        return True
