"""PaymentRecords: the payments rows (migration 0010), the only code that knows their SQL outside
the purchase statement (which moves a pending row to ``succeeded``, ticketing/orders/store.py).

A paid purchase :meth:`opens <PaymentRecords.open>` its row (``pending``) before it charges; every
later step is a compare-and-set on the row's state, so the purchase, a retry and the worker's
reconciler can never both settle one charge (one commits the order, or one claims the refund):

    pending/unknown --commit--> succeeded
    pending/unknown --decline / no charge at the gateway--> failed
    pending --no answer (gateway timeout, commit connection lost)--> unknown
    pending/unknown --claim_refund--> refunding --gateway ok--> refunded
                                                 --gateway failed--> refund_failed (retried, backoff)
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Literal

import asyncpg
import msgspec

from stagedoor.errors import DependencyUnavailable

PaymentStatus = Literal["pending", "succeeded", "failed", "unknown", "refunding", "refunded", "refund_failed"]


def purchase_key(user_id: str, idempotency_key: str, hold_id: str) -> str:
    """The purchase's identity: the same fan, Idempotency-Key and hold give the same key (and so the
    same gateway idempotency key, ``<purchase_key>:<seq>``)."""
    digest = hashlib.sha256()
    for part in (user_id, idempotency_key, hold_id):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:40]


class NewPayment(msgspec.Struct, frozen=True, kw_only=True):
    """What a pending row records: enough for the reconciler to finish the order the purchase began."""

    purchase_key: str
    user_id: str
    gateway: str
    hold_id: str
    event_id: int
    idempotency_key: str
    fingerprint: str
    email: str
    subtotal: int
    discount: int
    discount_code_id: int | None
    amount: int
    currency: str


class Opened(msgspec.Struct, frozen=True, kw_only=True):
    gateway_key: str
    status: PaymentStatus  # "pending" for a new row; else the state the earlier attempt left
    fingerprint: str
    inserted: bool


class PaymentRow(NewPayment, frozen=True, kw_only=True):
    """A row as read back: what the purchase recorded, and where it stands."""

    id: int
    gateway_key: str
    status: PaymentStatus
    charge_id: str | None
    reason: str | None
    attempts: int
    updated_at: dt.datetime  # as read (the reconciler's lease)


# The latest row of the purchase decides: pending/unknown -> reuse its key (the gateway answers with
# the charge it may already have made); succeeded -> the order exists (replay it); anything else
# (no charge, or the charge's money is owed back or returned) -> a new row, seq + 1, a new key.
OPEN = """
WITH latest AS (
    SELECT gateway_key, status, seq, fingerprint FROM payments
    WHERE purchase_key = $1 ORDER BY seq DESC LIMIT 1
), reused AS (  -- touched: a reconciler's lease on it is void (this retry may charge under its key)
    UPDATE payments SET updated_at = clock_timestamp()
    WHERE gateway_key = (SELECT gateway_key FROM latest WHERE status IN ('pending', 'unknown'))
    RETURNING 1
), fresh AS (
    INSERT INTO payments (purchase_key, seq, gateway_key, user_id, gateway, hold_id, event_id, idempotency_key,
                          fingerprint, email, subtotal, discount, discount_code_id, amount, currency, status)
    SELECT $1, n.seq, $1 || ':' || n.seq, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending'
    FROM (SELECT coalesce((SELECT seq + 1 FROM latest), 0) AS seq) n
    WHERE NOT EXISTS (SELECT 1 FROM latest WHERE status IN ('pending', 'unknown', 'succeeded'))
    ON CONFLICT (gateway_key) DO NOTHING
    RETURNING gateway_key, status, fingerprint
)
SELECT f.gateway_key, f.status, f.fingerprint, true AS inserted FROM fresh f
UNION ALL
SELECT l.gateway_key, l.status, l.fingerprint, false FROM latest l WHERE NOT EXISTS (SELECT 1 FROM fresh)
"""

# $n::timestamptz "lease": the reconciler's conditional updates also require the row untouched since it
# leased it (a fan's retry reusing the row touches it: the retry's charge may be on its way).
MARK_FAILED = """
UPDATE payments SET status = 'failed', reason = $2, updated_at = now()
WHERE gateway_key = $1 AND status IN ('pending', 'unknown') AND ($3::timestamptz IS NULL OR updated_at = $3)
RETURNING 1
"""

MARK_SUCCEEDED = """
UPDATE payments SET status = 'succeeded', order_id = $2, charge_id = $3, updated_at = now()
WHERE gateway_key = $1 AND status IN ('pending', 'unknown') AND ($4::timestamptz IS NULL OR updated_at = $4)
RETURNING 1
"""

MARK_UNKNOWN = """
UPDATE payments SET status = 'unknown', reason = $2, charge_id = coalesce($3, charge_id), updated_at = now()
WHERE gateway_key = $1 AND status = 'pending'
RETURNING 1
"""

CLAIM_REFUND = """
UPDATE payments SET status = 'refunding', reason = $2, charge_id = $3, amount = $4,
                    next_attempt_at = now() + make_interval(secs => $5), updated_at = now()
WHERE gateway_key = $1 AND status IN ('pending', 'unknown') AND ($6::timestamptz IS NULL OR updated_at = $6)
RETURNING 1
"""

MARK_REFUNDED = """
UPDATE payments SET status = 'refunded', refund_id = $2, refunded_at = now(), next_attempt_at = NULL,
                    last_error = NULL, updated_at = now()
WHERE gateway_key = $1 AND status IN ('refunding', 'refund_failed')
RETURNING 1
"""

MARK_REFUND_FAILED = """
UPDATE payments SET status = 'refund_failed', attempts = attempts + 1, last_error = $2,
                    next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
WHERE gateway_key = $1 AND status IN ('refunding', 'refund_failed')
RETURNING attempts
"""

# (rows from before migration 0010, only ever seen as refunds owed, lack the purchase's fields)
_COLUMNS = """id, gateway_key, status, coalesce(purchase_key, '') AS purchase_key,
user_id::text AS user_id, gateway, coalesce(hold_id, '') AS hold_id,
coalesce(event_id, 0) AS event_id, coalesce(idempotency_key, '') AS idempotency_key,
coalesce(fingerprint, '') AS fingerprint, coalesce(email, '') AS email, coalesce(subtotal, amount) AS subtotal,
coalesce(discount, 0) AS discount, discount_code_id, amount, currency, charge_id, reason, attempts, updated_at"""

# Both reads lease what they return (updated_at / next_attempt_at moved on), so reconcilers in several
# workers never settle one row at once; a reconciler that dies leaves the row to the next lease.
STALE = f"""
UPDATE payments SET updated_at = clock_timestamp()
WHERE id IN (SELECT id FROM payments
             WHERE status IN ('pending', 'unknown') AND updated_at < now() - make_interval(secs => $1)
             ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING {_COLUMNS}
"""

REFUNDS_DUE = f"""
UPDATE payments SET next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (SELECT id FROM payments
             WHERE status IN ('refunding', 'refund_failed') AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING {_COLUMNS}
"""

OWED = "SELECT count(*) FROM payments WHERE status IN ('refunding', 'refund_failed')"

GET = f"SELECT {_COLUMNS} FROM payments WHERE gateway_key = $1"


def _row(r: asyncpg.Record) -> PaymentRow:
    out = dict(r)
    out["currency"] = out["currency"].strip()
    return msgspec.convert(out, PaymentRow)


class PaymentRecords:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def open(self, p: NewPayment) -> Opened | None:
        """The pending row of this purchase (new, or the earlier attempt's when its charge may exist);
        None when a concurrent attempt opened it this very moment (the caller answers 'in progress').
        DependencyUnavailable when PostgreSQL does not answer (nothing is charged then)."""
        try:
            row = await self._open(p)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DependencyUnavailable("the payment records are unreachable; nothing was charged",
                                        retry_after_s=1) from exc
        if row is None:
            return None
        return Opened(gateway_key=row["gateway_key"], status=row["status"], fingerprint=row["fingerprint"],
                      inserted=row["inserted"])

    async def _open(self, p: NewPayment) -> asyncpg.Record | None:
        return await self.pool.fetchrow(OPEN, p.purchase_key, p.user_id, p.gateway, p.hold_id, p.event_id,
                                       p.idempotency_key, p.fingerprint, p.email, p.subtotal, p.discount,
                                       p.discount_code_id, p.amount, p.currency)

    async def mark_failed(self, gateway_key: str, reason: str, lease: dt.datetime | None = None) -> bool:
        return await self.pool.fetchval(MARK_FAILED, gateway_key, reason, lease) is not None

    async def mark_succeeded(self, gateway_key: str, order_id: str, charge_id: str,
                             lease: dt.datetime | None = None) -> bool:
        return await self.pool.fetchval(MARK_SUCCEEDED, gateway_key, order_id, charge_id, lease) is not None

    async def mark_unknown(self, gateway_key: str, reason: str, charge_id: str | None = None) -> bool:
        return await self.pool.fetchval(MARK_UNKNOWN, gateway_key, reason, charge_id) is not None

    async def claim_refund(self, gateway_key: str, *, charge_id: str, amount: int, reason: str,
                           retry_in_s: float, lease: dt.datetime | None = None) -> bool:
        """pending/unknown -> refunding; False when the row was settled meanwhile (then: no refund).
        ``retry_in_s``: when the retry loop may pick it up if this refund never reports back."""
        return await self.pool.fetchval(CLAIM_REFUND, gateway_key, reason, charge_id, amount,
                                        float(retry_in_s), lease) is not None

    async def mark_refunded(self, gateway_key: str, refund_id: str) -> bool:
        return await self.pool.fetchval(MARK_REFUNDED, gateway_key, refund_id) is not None

    async def mark_refund_failed(self, gateway_key: str, error: str, retry_in_s: float) -> int | None:
        """Refund failed: the attempts so far, or None when the row is no longer owed a refund."""
        attempts: int | None = await self.pool.fetchval(MARK_REFUND_FAILED, gateway_key, error[:500],
                                                        float(retry_in_s))
        return attempts

    async def stale(self, older_than_s: float, limit: int) -> list[PaymentRow]:
        """pending/unknown rows untouched for ``older_than_s``: the reconciler's work, leased (their
        ``updated_at`` is now: another reconciler takes them only ``older_than_s`` later)."""
        return [_row(r) for r in await self.pool.fetch(STALE, float(older_than_s), limit)]

    async def refunds_due(self, limit: int, lease_s: float) -> list[PaymentRow]:
        """Refunds owed whose next attempt is due, leased for ``lease_s`` (the attempt records its
        own next_attempt_at when it fails)."""
        return [_row(r) for r in await self.pool.fetch(REFUNDS_DUE, limit, float(lease_s))]

    async def refunds_owed(self) -> int:
        return int(await self.pool.fetchval(OWED))

    async def get(self, gateway_key: str) -> PaymentRow | None:
        row = await self.pool.fetchrow(GET, gateway_key)
        return None if row is None else _row(row)
