"""WebhookStore: the SQL of the gateway's webhooks (migration 0012; docs/payment-webhooks.md).

The receiver stores each handled webhook as one outbox row, once per gateway event id. The worker's
``payment_webhooks`` group reads where the webhook's charge stands (its charge attempt and settled
payments row, ticketing/payments/records.py) and applies it with compare-and-set statements, each safe
to repeat: a redelivered webhook, or one applied twice after a crash, changes nothing the second time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import msgspec

from stagedoor.errors import DependencyUnavailable
from ticketing.payments.records import attempt_of

RECORD = """
INSERT INTO outbox (event_id, event_type, aggregate_id, payload) VALUES ($1, $2, $3, $4::text::jsonb)
ON CONFLICT (event_id) DO NOTHING
RETURNING id
"""

GET_ATTEMPT = """
SELECT gateway_key, state, amount, currency, charge_id, charged_at, event_id
FROM charge_attempts WHERE purchase_key = $1 AND seq = $2
"""

# The settled payments row of a charge: by its gateway key, else by the gateway's id of the charge
# (payments.charge_id is the payment intent; unique).
GET_PAYMENT = """
SELECT p.gateway_key, p.status, p.order_id::text AS order_id, p.amount, p.currency, p.amount_refunded,
       coalesce(p.event_id, o.event_id) AS event_id, p.charge_id, o.status AS order_status
FROM payments p LEFT JOIN orders o ON o.id = p.order_id
WHERE ($1::text IS NOT NULL AND p.gateway_key = $1) OR ($2::text IS NOT NULL AND p.charge_id = $2)
ORDER BY (p.gateway_key = $1) DESC NULLS LAST
LIMIT 1
"""

_UNSETTLED = "NOT EXISTS (SELECT 1 FROM payments p WHERE p.gateway_key = charge_attempts.gateway_key)"

# The gateway charged under this attempt's key: remember the charge (the reconciler settles the attempt
# after the payment window, as it settles any other). An attempt marked failed before (a decline
# reported first, or a lookup that saw nothing yet) was charged after all: unknown again, so the
# reconciler completes its order or refunds it.
RECORD_CHARGE = f"""
WITH before AS (
    SELECT state FROM charge_attempts WHERE purchase_key = $1 AND seq = $2 FOR UPDATE
)
UPDATE charge_attempts
SET charge_id = $3, charged_at = coalesce(charged_at, $4),
    state = CASE WHEN state = 'failed' THEN 'unknown' ELSE state END,
    reason = CASE WHEN state = 'failed' THEN 'charged_after_failure' ELSE reason END
WHERE purchase_key = $1 AND seq = $2 AND (charge_id IS NULL OR charge_id = $3) AND {_UNSETTLED}
RETURNING (SELECT state FROM before)
"""

# The gateway says this attempt's payment failed: only while no success was heard for it (a failure
# reported after the success, out of order, is stale) and it is not settled.
MARK_FAILED = f"""
UPDATE charge_attempts SET state = 'failed', reason = $3, updated_at = now()
WHERE purchase_key = $1 AND seq = $2 AND state IN ('pending', 'unknown') AND charged_at IS NULL
  AND (charge_id IS NULL OR charge_id = $4) AND {_UNSETTLED}
RETURNING 1
"""

# A refund made at the gateway (its dashboard) of a confirmed order, in full: the order and its payment
# refunded and OrderRefunded announced, in one statement (as the cancellation's refunds do).
REFUND_ORDER = """
WITH refunded AS (
    UPDATE orders SET status = 'refunded' WHERE id = $1::uuid AND status = 'confirmed'
    RETURNING id, event_id, user_id, email, currency
), paid_back AS (
    UPDATE payments SET status = 'refunded', refund_id = $2, refunded_at = now(), amount_refunded = $3,
                        updated_at = now()
    WHERE order_id = $1::uuid AND status = 'succeeded' AND EXISTS (SELECT 1 FROM refunded)
    RETURNING 1
)
INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
SELECT $4::uuid, 'OrderRefunded', r.id::text,
       jsonb_build_object('order_id', r.id::text, 'event_id', r.event_id::text, 'user_id', r.user_id::text,
                          'email', r.email, 'amount', $3::bigint, 'currency', trim(r.currency), 'reason', $5::text)
FROM refunded r
ON CONFLICT (event_id) DO NOTHING
RETURNING id
"""

# Part of a confirmed order's charge returned at the gateway: the amount refunded so far (the order
# and its tickets stand).
REFUND_PART = """
UPDATE payments SET amount_refunded = greatest(amount_refunded, $2), updated_at = now()
WHERE gateway_key = $1 AND status = 'succeeded' AND amount_refunded < $2
RETURNING 1
"""

# A flag, once per gateway event and kind, and its PaymentFlagged outbox row in the same statement.
FLAG = """
WITH flag AS (
    INSERT INTO payment_flags (kind, source_event, gateway, gateway_key, charge_id, order_id, event_id, details)
    VALUES ($1, $2, $3, $4, $5, $6::uuid, $7, $8::text::jsonb)
    ON CONFLICT ON CONSTRAINT payment_flags_once DO NOTHING
    RETURNING id, kind, event_id, order_id
), announced AS (
    INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
    SELECT $9::uuid, 'PaymentFlagged', f.event_id::text,
           jsonb_strip_nulls(jsonb_build_object('flag_id', f.id, 'kind', f.kind, 'event_id', f.event_id::text,
                                                'order_id', f.order_id::text))
    FROM flag f
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
)
SELECT id FROM flag
"""

_DB_DOWN = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError)


class AttemptStanding(msgspec.Struct, frozen=True, kw_only=True):
    gateway_key: str
    state: str  # pending | unknown | failed
    amount: int
    currency: str
    charge_id: str | None
    charged_at: dt.datetime | None
    event_id: int


class PaymentStanding(msgspec.Struct, frozen=True, kw_only=True):
    gateway_key: str | None
    status: str  # succeeded | refunding | refunded | refund_failed
    order_id: str | None
    amount: int
    currency: str
    amount_refunded: int
    event_id: int | None
    charge_id: str | None
    order_status: str | None


class Standing(msgspec.Struct, frozen=True, kw_only=True):
    """Where a charge stands in stagedoor: its attempt (unsettled, or failed) and its settled row."""

    attempt: AttemptStanding | None
    payment: PaymentStanding | None


def _attempt_key(gateway_key: str | None) -> tuple[str, int] | None:
    if not gateway_key:
        return None
    try:
        return attempt_of(gateway_key)
    except ValueError:  # not one of our keys
        return None


class WebhookStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, event_id: str, event_type: str, aggregate_id: str, payload: bytes) -> bool:
        """One outbox row for the webhook; False when the same event was stored before. Raises
        DependencyUnavailable when PostgreSQL does not answer (the gateway delivers again later)."""
        try:
            row = await self.pool.fetchval(RECORD, event_id, event_type, aggregate_id, payload.decode())
        except _DB_DOWN as exc:
            raise DependencyUnavailable("the webhook could not be stored; deliver it again", retry_after_s=5) from exc
        return row is not None

    async def standing(self, gateway_key: str | None, charge_id: str | None) -> Standing:
        payment_row = await self.pool.fetchrow(GET_PAYMENT, gateway_key, charge_id) \
            if gateway_key or charge_id else None
        payment = None if payment_row is None else _convert(payment_row, PaymentStanding)
        key = _attempt_key(gateway_key or (payment.gateway_key if payment is not None else None))
        attempt_row = await self.pool.fetchrow(GET_ATTEMPT, *key) if key is not None else None
        attempt = None if attempt_row is None else _convert(attempt_row, AttemptStanding)
        return Standing(attempt=attempt, payment=payment)

    async def record_charge(self, gateway_key: str, charge_id: str, charged_at: dt.datetime) -> str | None:
        """The attempt's state before the charge was recorded; None when nothing was recorded (settled,
        unknown key, or another charge recorded)."""
        state: str | None = await self.pool.fetchval(RECORD_CHARGE, *attempt_of(gateway_key), charge_id, charged_at)
        return state

    async def mark_failed(self, gateway_key: str, reason: str, charge_id: str) -> bool:
        return await self.pool.fetchval(MARK_FAILED, *attempt_of(gateway_key), reason[:200], charge_id) is not None

    async def refund_order(self, order_id: str, refund_id: str, amount: int, outbox_event_id: str,
                           reason: str) -> bool:
        """A confirmed order refunded in full at the gateway; False when it was not confirmed."""
        return await self.pool.fetchval(REFUND_ORDER, order_id, refund_id, amount, outbox_event_id,
                                        reason) is not None

    async def refund_part(self, gateway_key: str, amount_refunded: int) -> bool:
        return await self.pool.fetchval(REFUND_PART, gateway_key, amount_refunded) is not None

    async def flag(self, *, kind: str, source_event: str, gateway: str, gateway_key: str | None,
                   charge_id: str | None, order_id: str | None, event_id: int, details: dict[str, Any],
                   outbox_event_id: str) -> int | None:
        """The new flag's id (its PaymentFlagged row written with it); None when this gateway event
        flagged it before."""
        flag_id: int | None = await self.pool.fetchval(
            FLAG, kind, source_event, gateway, gateway_key, charge_id, order_id, event_id,
            msgspec.json.encode(details).decode(), outbox_event_id)
        return flag_id


def _convert(row: asyncpg.Record, into: type[Any]) -> Any:
    out = dict(row)
    if out.get("currency") is not None:
        out["currency"] = out["currency"].strip()
    return msgspec.convert(out, into)
