"""PaymentRecords: charge attempts and settled payments (migrations 0010, 0011), the only code that
knows their SQL besides the purchase statement (ticketing/orders/store.py), which inserts the key's
``succeeded`` payments row and deletes its attempt.

A paid purchase :meth:`opens <PaymentRecords.open>` an attempt (``pending``, in ``charge_attempts``)
before it charges, under the gateway key ``<purchase_key>:<seq>``. Settling it inserts the key's
``payments`` row, once (the key is unique there): either the purchase statement with the order, or a
refund's claim. So the purchase, a retry and the worker's reconciler can never both settle one charge:

    attempt pending/unknown --commit--> payments succeeded (the attempt is deleted)
    attempt pending/unknown --decline / no charge at the gateway--> attempt failed
    attempt pending --no answer (gateway timeout, commit connection lost)--> attempt unknown
    attempt pending/unknown --claim_refund--> payments refunding --gateway ok--> refunded
                                                             --gateway failed--> refund_failed (retried)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from typing import Literal

import asyncpg
import msgspec

from stagedoor.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

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
    status: PaymentStatus  # "pending" for a new attempt; else where the earlier attempt stands
    inserted: bool
    charge_id: str | None = None  # the earlier attempt's charge or payment intent, when the gateway named one


class PaymentRow(NewPayment, frozen=True, kw_only=True):
    """A row as read back: what the purchase recorded, and where it stands."""

    id: int
    gateway_key: str
    status: PaymentStatus
    charge_id: str | None
    reason: str | None
    attempts: int
    updated_at: dt.datetime  # as read (the reconciler's lease)


# The latest attempt decides, seen through its payments row when it has one: pending/unknown -> reuse its
# key (the gateway answers with the charge it may already have made); anything else (no charge, or the
# charge's money is owed back or returned) -> the next seq, a new key; unless an order committed under
# that next key (the commit deletes its attempt), in which case it is the purchase's standing.
OPEN = """
WITH latest AS (
    SELECT a.seq, a.gateway_key, coalesce(p.status, a.state) AS status, coalesce(p.charge_id, a.charge_id) AS charge_id
    FROM charge_attempts a LEFT JOIN payments p ON p.gateway_key = a.gateway_key
    WHERE a.purchase_key = $1
    ORDER BY a.seq DESC LIMIT 1
), candidate AS (
    SELECT n.seq, $1 || ':' || n.seq AS gateway_key
    FROM (SELECT coalesce((SELECT seq + 1 FROM latest), 0) AS seq) n
    WHERE NOT EXISTS (SELECT 1 FROM latest WHERE status IN ('pending', 'unknown', 'succeeded'))
), committed AS (
    SELECT p.gateway_key, 'succeeded'::text AS status, p.charge_id
    FROM candidate c JOIN payments p ON p.gateway_key = c.gateway_key AND p.order_id IS NOT NULL
), reused AS (  -- touched: a reconciler's lease on it is void (this retry may charge under its key)
    UPDATE charge_attempts SET updated_at = clock_timestamp()
    WHERE purchase_key = $1 AND seq = (SELECT seq FROM latest WHERE status IN ('pending', 'unknown'))
    RETURNING 1
), fresh AS (
    INSERT INTO charge_attempts (purchase_key, seq, user_id, gateway, hold_id, event_id, idempotency_key,
                                 fingerprint, email, subtotal, discount, discount_code_id, amount, currency)
    SELECT $1, c.seq, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
    FROM candidate c
    WHERE NOT EXISTS (SELECT 1 FROM committed)
    ON CONFLICT (purchase_key, seq) DO NOTHING
    RETURNING gateway_key, state AS status, charge_id
)
SELECT gateway_key, status, charge_id, true AS inserted FROM fresh
UNION ALL
SELECT gateway_key, status, charge_id, false FROM committed
UNION ALL
SELECT gateway_key, status, charge_id, false FROM latest WHERE NOT EXISTS (SELECT 1 FROM candidate)
"""

# The first attempt of many purchases at once (one statement per event-loop turn): each purchase's
# attempt seq 0, unless the purchase has an attempt already or an order committed under its first key
# (those take OPEN, one by one: retries are rare). What OPEN would do for a purchase seen for the first
# time, at a fraction of the cost per purchase.
OPEN_FIRST = """
INSERT INTO charge_attempts (purchase_key, seq, user_id, gateway, hold_id, event_id, idempotency_key,
                             fingerprint, email, subtotal, discount, discount_code_id, amount, currency)
SELECT u.purchase_key, 0, u.user_id, u.gateway, u.hold_id, u.event_id, u.idempotency_key, u.fingerprint,
       u.email, u.subtotal, u.discount, u.discount_code_id, u.amount, u.currency
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[],
            $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[])
     AS u(purchase_key, user_id, gateway, hold_id, event_id, idempotency_key, fingerprint, email, subtotal,
          discount, discount_code_id, amount, currency)
WHERE NOT EXISTS (SELECT 1 FROM charge_attempts a WHERE a.purchase_key = u.purchase_key)
  AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.gateway_key = u.purchase_key || ':0')
ON CONFLICT (purchase_key, seq) DO NOTHING
RETURNING purchase_key
"""

# The gateway asked the fan to authenticate (3-D Secure): the attempt remembers the payment intent, so the
# fan's retry continues that intent instead of making another.
NOTE_INTENT = """
UPDATE charge_attempts SET charge_id = $3, updated_at = now()
WHERE purchase_key = $1 AND seq = $2 AND state IN ('pending', 'unknown') AND (charge_id IS NULL OR charge_id = $3)
RETURNING 1
"""

# The attempt's own states. $n::timestamptz "lease": the reconciler's conditional updates also require
# the attempt untouched since it leased it (a fan's retry reusing the attempt touches it: the retry's
# charge may be on its way). An attempt whose payments row exists is settled: none of these apply.
_UNSETTLED = "NOT EXISTS (SELECT 1 FROM payments p WHERE p.gateway_key = charge_attempts.gateway_key)"

# A charge the gateway's webhook reported (charged_at) is never marked failed: a lookup that lags behind
# the gateway (search is eventually consistent) must not undo what the gateway said.
MARK_FAILED = f"""
UPDATE charge_attempts SET state = 'failed', reason = $3, updated_at = now()
WHERE purchase_key = $1 AND seq = $2 AND state IN ('pending', 'unknown') AND charged_at IS NULL
  AND ($4::timestamptz IS NULL OR updated_at = $4) AND {_UNSETTLED}
RETURNING 1
"""

MARK_UNKNOWN = f"""
UPDATE charge_attempts SET state = 'unknown', reason = $3, charge_id = coalesce($4, charge_id), updated_at = now()
WHERE purchase_key = $1 AND seq = $2 AND state = 'pending' AND {_UNSETTLED}
RETURNING 1
"""

# An order committed with this attempt's charge by another way than the purchase statement under this key
# (a row of 0010): the attempt is done.
SETTLE_WITH_ORDER = f"""
DELETE FROM charge_attempts
WHERE purchase_key = $1 AND seq = $2 AND state IN ('pending', 'unknown')
  AND ($3::timestamptz IS NULL OR updated_at = $3) AND {_UNSETTLED}
RETURNING 1
"""

# The refund's claim is the key's payments row: if the purchase statement inserted it first (the order
# committed), the claim inserts nothing; if the claim is first, the statement's insert is refused.
CLAIM_REFUND = """
INSERT INTO payments (order_id, user_id, gateway, charge_id, amount, currency, status, reason, gateway_key, seq,
                      purchase_key, hold_id, event_id, idempotency_key, fingerprint, email, subtotal, discount,
                      discount_code_id, next_attempt_at, updated_at)
SELECT NULL, a.user_id, a.gateway, $3, $4, a.currency, 'refunding', $5, a.gateway_key, a.seq, a.purchase_key,
       a.hold_id, a.event_id, a.idempotency_key, a.fingerprint, a.email, a.subtotal, a.discount,
       a.discount_code_id, now() + make_interval(secs => $6), now()
FROM charge_attempts a
WHERE a.purchase_key = $1 AND a.seq = $2 AND a.state IN ('pending', 'unknown')
  AND ($7::timestamptz IS NULL OR a.updated_at = $7)
ON CONFLICT DO NOTHING
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

_ATTEMPT_COLUMNS = """0 AS id, gateway_key, state AS status, purchase_key, user_id::text AS user_id, gateway,
hold_id, event_id, idempotency_key, fingerprint, email, subtotal, discount, discount_code_id, amount, currency,
charge_id, reason, 0 AS attempts, updated_at"""

# (rows from before migration 0010, only ever seen as refunds owed, lack the purchase's fields)
_PAYMENT_COLUMNS = """id, gateway_key, status, coalesce(purchase_key, '') AS purchase_key,
user_id::text AS user_id, gateway, coalesce(hold_id, '') AS hold_id,
coalesce(event_id, 0) AS event_id, coalesce(idempotency_key, '') AS idempotency_key,
coalesce(fingerprint, '') AS fingerprint, coalesce(email, '') AS email, coalesce(subtotal, amount) AS subtotal,
coalesce(discount, 0) AS discount, discount_code_id, amount, currency, charge_id, reason, attempts, updated_at"""

# Both reads lease what they return (updated_at / next_attempt_at moved on), so reconcilers in several
# workers never settle one row at once; a reconciler that dies leaves the row to the next lease. The
# attempts table holds only unsettled, failed and refunded attempts (the commit deletes its attempt):
# it stays small, and is read without an index.
STALE = f"""
UPDATE charge_attempts SET updated_at = clock_timestamp()
WHERE (purchase_key, seq) IN (
    SELECT a.purchase_key, a.seq FROM charge_attempts a
    WHERE a.state IN ('pending', 'unknown') AND a.updated_at < now() - make_interval(secs => $1)
      AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.gateway_key = a.gateway_key)
    ORDER BY a.updated_at LIMIT $2 FOR UPDATE OF a SKIP LOCKED)
RETURNING {_ATTEMPT_COLUMNS}
"""

REFUNDS_DUE = f"""
UPDATE payments SET next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (SELECT id FROM payments
             WHERE status IN ('refunding', 'refund_failed') AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING {_PAYMENT_COLUMNS}
"""

OWED = "SELECT count(*) FROM payments WHERE status IN ('refunding', 'refund_failed')"

GET_PAYMENT = f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE gateway_key = $1"

GET_ATTEMPT = f"SELECT {_ATTEMPT_COLUMNS} FROM charge_attempts WHERE purchase_key = $1 AND seq = $2"

# Failed attempts are kept for the purchase's seq (its next attempt takes a new gateway key, which a
# gateway that remembers declines per key requires) well past any gateway's key retention, then go.
PRUNE_FAILED = """
DELETE FROM charge_attempts
WHERE (purchase_key, seq) IN (SELECT purchase_key, seq FROM charge_attempts
                              WHERE state = 'failed' AND updated_at < now() - make_interval(secs => $1)
                              LIMIT $2)
"""

FAILED_ATTEMPT_RETENTION_S = 7 * 86_400


def attempt_of(gateway_key: str) -> tuple[str, int]:
    """(purchase_key, seq) of a gateway key ``<purchase_key>:<seq>``."""
    purchase, _, seq = gateway_key.rpartition(":")
    return purchase, int(seq)


def _row(r: asyncpg.Record) -> PaymentRow:
    out = dict(r)
    out["currency"] = out["currency"].strip()
    return msgspec.convert(out, PaymentRow)


_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


# First attempts per statement at most (one event-loop turn rarely has more).
MAX_FIRST_BATCH = 256


class PaymentRecords:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._firsts: list[tuple[NewPayment, asyncio.Future[bool]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def open(self, p: NewPayment) -> Opened | None:
        """The pending attempt of this purchase (new, or the earlier one when its charge may exist);
        None when a concurrent attempt opened it this very moment (the caller answers 'in progress').
        DependencyUnavailable when PostgreSQL does not answer (nothing is charged then).

        A purchase seen for the first time is recorded with the other first attempts of this event-loop
        turn, in one statement (OPEN_FIRST); any other (a retry) takes OPEN on its own."""
        try:
            if await self._open_first(p):
                return Opened(gateway_key=f"{p.purchase_key}:0", status="pending", inserted=True)
            row = await self.pool.fetchrow(OPEN, p.purchase_key, p.user_id, p.gateway, p.hold_id, p.event_id,
                                           p.idempotency_key, p.fingerprint, p.email, p.subtotal, p.discount,
                                           p.discount_code_id, p.amount, p.currency)
        except _UNREACHABLE as exc:
            raise DependencyUnavailable("the payment records are unreachable; nothing was charged",
                                        retry_after_s=1) from exc
        if row is None:
            return None
        return Opened(gateway_key=row["gateway_key"], status=row["status"], inserted=row["inserted"],
                      charge_id=row["charge_id"])

    def _open_first(self, p: NewPayment) -> asyncio.Future[bool]:
        """True once the turn's statement recorded this purchase's first attempt; False when the purchase
        had an attempt or an order already."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if not self._firsts:
            loop.call_soon(self._send_firsts)
        self._firsts.append((p, future))
        if len(self._firsts) >= MAX_FIRST_BATCH:
            self._send_firsts()
        return future

    def _send_firsts(self) -> None:
        batch, self._firsts = self._firsts, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._insert_firsts(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _insert_firsts(self, batch: list[tuple[NewPayment, asyncio.Future[bool]]]) -> None:
        ps = [p for p, _ in batch]
        try:
            rows = await self.pool.fetch(
                OPEN_FIRST, [p.purchase_key for p in ps], [p.user_id for p in ps], [p.gateway for p in ps],
                [p.hold_id for p in ps], [p.event_id for p in ps], [p.idempotency_key for p in ps],
                [p.fingerprint for p in ps], [p.email for p in ps], [p.subtotal for p in ps],
                [p.discount for p in ps], [p.discount_code_id for p in ps], [p.amount for p in ps],
                [p.currency for p in ps])
        except Exception:
            # Nothing of the batch is known to be recorded: each purchase takes the one-by-one OPEN, which
            # finds an attempt the batch did write (its commit's answer lost), and fails on its own if the
            # trouble was its own row or PostgreSQL is away.
            logger.warning("first_attempts_batch_failed", extra={"purchases": len(batch)}, exc_info=True)
            for _, future in batch:
                if not future.done():
                    future.set_result(False)
            return
        recorded = {row["purchase_key"] for row in rows}
        for p, future in batch:
            if not future.done():  # (a purchase whose client left: its attempt stays, the reconciler fails it)
                future.set_result(p.purchase_key in recorded)

    async def note_intent(self, gateway_key: str, intent_id: str) -> bool:
        """The gateway made a payment intent that waits for the fan (3-D Secure): remember it."""
        try:
            return await self.pool.fetchval(NOTE_INTENT, *attempt_of(gateway_key), intent_id) is not None
        except _UNREACHABLE as exc:  # the retry asks the gateway again under the same key
            raise DependencyUnavailable("the payment records are unreachable; retry", retry_after_s=1) from exc

    async def mark_failed(self, gateway_key: str, reason: str, lease: dt.datetime | None = None) -> bool:
        """pending/unknown -> failed: the gateway took no charge under this key."""
        return await self.pool.fetchval(MARK_FAILED, *attempt_of(gateway_key), reason, lease) is not None

    async def mark_succeeded(self, gateway_key: str, lease: dt.datetime | None = None) -> bool:
        """The attempt's charge paid for an order already committed: the attempt is done."""
        return await self.pool.fetchval(SETTLE_WITH_ORDER, *attempt_of(gateway_key), lease) is not None

    async def mark_unknown(self, gateway_key: str, reason: str, charge_id: str | None = None) -> bool:
        return await self.pool.fetchval(MARK_UNKNOWN, *attempt_of(gateway_key), reason, charge_id) is not None

    async def claim_refund(self, gateway_key: str, *, charge_id: str, amount: int, reason: str,
                           retry_in_s: float, lease: dt.datetime | None = None) -> bool:
        """An unsettled attempt's charge is owed back: its payments row ``refunding``; False when the
        attempt was settled meanwhile (its order committed, or a refund was claimed: then no refund).
        ``retry_in_s``: when the retry loop may pick it up if this refund never reports back."""
        return await self.pool.fetchval(CLAIM_REFUND, *attempt_of(gateway_key), charge_id, amount, reason,
                                        float(retry_in_s), lease) is not None

    async def mark_refunded(self, gateway_key: str, refund_id: str) -> bool:
        return await self.pool.fetchval(MARK_REFUNDED, gateway_key, refund_id) is not None

    async def mark_refund_failed(self, gateway_key: str, error: str, retry_in_s: float) -> int | None:
        """Refund failed: the attempts so far, or None when the row is no longer owed a refund."""
        attempts: int | None = await self.pool.fetchval(MARK_REFUND_FAILED, gateway_key, error[:500],
                                                        float(retry_in_s))
        return attempts

    async def stale(self, older_than_s: float, limit: int) -> list[PaymentRow]:
        """Unsettled attempts untouched for ``older_than_s``: the reconciler's work, leased (their
        ``updated_at`` is now: another reconciler takes them only ``older_than_s`` later)."""
        return [_row(r) for r in await self.pool.fetch(STALE, float(older_than_s), limit)]

    async def refunds_due(self, limit: int, lease_s: float) -> list[PaymentRow]:
        """Refunds owed whose next attempt is due, leased for ``lease_s`` (the attempt records its
        own next_attempt_at when it fails)."""
        return [_row(r) for r in await self.pool.fetch(REFUNDS_DUE, limit, float(lease_s))]

    async def refunds_owed(self) -> int:
        return int(await self.pool.fetchval(OWED))

    async def prune_failed(self, older_than_s: float = FAILED_ATTEMPT_RETENTION_S, limit: int = 1_000) -> int:
        """Forget failed attempts older than ``older_than_s``; how many went."""
        status: str = await self.pool.execute(PRUNE_FAILED, float(older_than_s), limit)
        return int(status.rsplit(" ", 1)[-1])

    async def get(self, gateway_key: str) -> PaymentRow | None:
        """The key's payments row (settled), else its attempt; None when neither exists."""
        row = await self.pool.fetchrow(GET_PAYMENT, gateway_key)
        if row is None and not gateway_key.startswith("legacy:"):
            row = await self.pool.fetchrow(GET_ATTEMPT, *attempt_of(gateway_key))
        return None if row is None else _row(row)
