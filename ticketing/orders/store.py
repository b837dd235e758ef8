"""Orders, tickets, payments, idempotency records and discount codes in PostgreSQL.

The only module that knows this SQL. The purchase is ONE statement (data-modifying CTEs,
one round trip, atomic on its own: pgbench and a bare asyncpg handler commit it 1.4-1.7x as
often as four statements in a transaction; docs/decisions/0004-one-statement-purchase.md).
Its refusals come from constraints, translated here into :class:`CommitRefused` with a reason
the purchase flow maps to a domain error:

- ``tickets_sold_once`` / ``tier_sales_within_capacity``: sold once, the constraint has the
  last word (Redis said free, PostgreSQL says sold);
- ``orders_one_per_hold``: the hold was already bought (another Idempotency-Key);
- ``idempotency_keys_pkey``: the same key committed meanwhile (replay it);
- ``account_ticket_limit``, ``discount_usage_limit``;
- ``event_on_sale``: the event is not on sale (cancelled); raised by ``event_sales_open()``, which
  serialises the purchase with the cancellation (migration 0010);
- ``payment_pending``: the charge is settled already: a refund claimed its key's payments row
  meanwhile (the reconciler), another commit used it, or its attempt was marked failed.

A paid order's charge attempt was written ``pending`` before the charge (ticketing/payments/records.py);
the statement inserts the key's ``succeeded`` payments row and deletes the attempt (no extra round
trip). A free order inserts its payments row only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
import msgspec

from stagedoor.errors import DependencyUnavailable
from ticketing.ids import EventNotFound
from ticketing.payments.records import attempt_of

RefusalReason = Literal["seat_sold", "ga_sold_out", "hold_bought", "idempotent_duplicate", "account_limit",
                        "discount_exhausted", "missing_reference", "event_not_on_sale", "payment_settled"]

_CONSTRAINT_REASONS: dict[str, RefusalReason] = {
    "tickets_sold_once": "seat_sold",
    "tier_sales_within_capacity": "ga_sold_out",
    "orders_one_per_hold": "hold_bought",
    "idempotency_keys_pkey": "idempotent_duplicate",
    "account_ticket_limit": "account_limit",
    "discount_usage_limit": "discount_exhausted",
    "event_on_sale": "event_not_on_sale",
    "payment_pending": "payment_settled",
    "orders_pkey": "payment_settled",  # the order of this very charge attempt committed (ids: order_id_of)
}

DB_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError,
           asyncpg.CannotConnectNowError)


class CommitOutcomeUnknown(DependencyUnavailable):
    """The connection died while the purchase statement ran: it may have committed. Never refund on
    this; the payments row (succeeded or not) and the idempotency record settle it later."""


class CommitRefused(Exception):
    def __init__(self, reason: RefusalReason, constraint: str) -> None:
        super().__init__(f"{reason} ({constraint})")
        self.reason = reason
        self.constraint = constraint


class NewTicket(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    seat: str | None
    tier: str
    price: int
    code: str


class NewOrder(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    event_id: int
    hold_id: str
    subtotal: int
    discount: int
    total: int
    currency: str
    discount_code_id: int | None
    email: str
    tickets: Sequence[NewTicket]
    ga_tier: str | None
    ga_quantity: int
    account_limit: int
    gateway: str
    charge_id: str
    outbox_payload: bytes
    idempotency_key: str
    fingerprint: str
    response: bytes
    gateway_key: str | None = None  # the charge attempt of a paid order (None: free)


class Discount(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    event_id: int
    code: str
    kind: Literal["percent", "fixed"]
    value: int
    max_uses: int
    used: int
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None


class StoredResponse(msgspec.Struct, frozen=True):
    fingerprint: str
    status: int
    body: bytes


# One statement: order, tickets, GA counter, account counter, discount usage, payment (and its charge
# attempt settled), outbox row and idempotency record, all or nothing; refused unless the event is on
# sale and the paid order's charge attempt is still unsettled (no refund claimed its key).
COMMIT_PURCHASE = """
WITH new_order AS (
    INSERT INTO orders (id, user_id, event_id, hold_id, subtotal, discount, total, currency,
                        discount_code_id, email)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    RETURNING id
), new_tickets AS (
    INSERT INTO tickets (id, order_id, event_id, seat_id, tier, price, code)
    SELECT t.id, $1, $3, t.seat, t.tier, t.price, t.code
    FROM unnest($11::uuid[], $12::text[], $13::text[], $14::bigint[], $15::text[]) AS t(id, seat, tier, price, code)
    RETURNING 1
), ga AS (
    INSERT INTO tier_sales (event_id, tier, capacity, sold)
    SELECT p.event_id, p.code, p.quantity, $17
    FROM price_tiers p
    WHERE p.event_id = $3 AND p.code = $16 AND p.quantity IS NOT NULL
    ON CONFLICT (event_id, tier) DO UPDATE SET sold = tier_sales.sold + EXCLUDED.sold
    RETURNING capacity - sold AS tickets_left
), account AS (
    INSERT INTO account_event_tickets (user_id, event_id, tickets, max_tickets)
    VALUES ($2, $3, $18, $19)
    ON CONFLICT (user_id, event_id) DO UPDATE
        SET tickets = account_event_tickets.tickets + EXCLUDED.tickets, max_tickets = EXCLUDED.max_tickets
    RETURNING 1
), discount_use AS (
    UPDATE discount_codes SET used = used + 1 WHERE id = $9
    RETURNING 1
), payment AS (  -- the key's payments row: inserted once, by this statement or by a refund's claim
    INSERT INTO payments (order_id, user_id, gateway, charge_id, amount, currency, status, gateway_key, seq,
                          hold_id, event_id)
    VALUES ($1, $2, $20, $21, $7, $8, 'succeeded', $26, coalesce($28, 0), $4, $3)
    ON CONFLICT DO NOTHING
    RETURNING 1
), attempt_done AS (  -- the charge attempt is settled (none for a free order)
    DELETE FROM charge_attempts
    WHERE purchase_key = $27 AND seq = $28 AND state IN ('pending', 'unknown')
    RETURNING 1
), announced AS (
    INSERT INTO outbox (event_type, aggregate_id, payload)
    VALUES ('OrderConfirmed', $1::text, $22::text::jsonb)
    RETURNING 1
), remembered AS (
    INSERT INTO idempotency_keys (user_id, key, fingerprint, status, response, order_id)
    VALUES ($2, $23, $24, 201, $25, $1)
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_tickets) AS tickets, (SELECT min(tickets_left) FROM ga) AS ga_left,
       event_sales_open($3) AS on_sale,
       CASE WHEN NOT EXISTS (SELECT 1 FROM payment)
                 OR ($27::text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM attempt_done))
            THEN payment_settled_refusal($26) END AS settled
"""

ANNOUNCE = """
INSERT INTO outbox (event_id, event_type, aggregate_id, payload) VALUES ($1, $2, $3, $4::text::jsonb)
ON CONFLICT (event_id) DO NOTHING
"""

REPLAY = "SELECT fingerprint, status, response FROM idempotency_keys WHERE user_id = $1 AND key = $2"

# What the reconciler checks before it settles a charge: did an order commit for this purchase's
# Idempotency-Key, or for its hold (maybe with another key)? And with which charge?
ORDER_OF_PURCHASE = """
SELECT (SELECT order_id::text FROM idempotency_keys WHERE user_id = $1 AND key = $2) AS by_key,
       o.id::text AS by_hold, p.charge_id AS hold_charge_id
FROM (SELECT 1) one
LEFT JOIN orders o ON o.hold_id = $3
LEFT JOIN payments p ON p.order_id = o.id
"""

GET_DISCOUNT = """
SELECT id, event_id, code, kind, value, max_uses, used, valid_from, valid_until
FROM discount_codes WHERE event_id = $1 AND code = $2
"""

CREATE_DISCOUNT = """
INSERT INTO discount_codes (event_id, code, kind, value, max_uses, valid_from, valid_until)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (event_id, code) DO NOTHING
RETURNING id, event_id, code, kind, value, max_uses, used, valid_from, valid_until
"""

EVENT_OWNER = "SELECT organizer_id::text AS organizer_id, currency, status FROM events WHERE id = $1"

GET_ORDER = """
SELECT o.id::text AS id, o.user_id::text AS user_id, o.event_id, o.hold_id, o.status, o.subtotal, o.discount,
       o.total, o.currency, o.email, o.created_at, e.organizer_id::text AS organizer_id,
       coalesce((SELECT json_agg(json_build_object('id', t.id, 'seat', t.seat_id, 'tier', t.tier,
                                                   'price', t.price, 'code', t.code,
                                                   'checked_in_at', t.checked_in_at) ORDER BY t.seat_id, t.id)
                 FROM tickets t WHERE t.order_id = o.id), '[]') AS tickets
FROM orders o JOIN events e ON e.id = o.event_id
WHERE o.id = $1
"""

EVENT_SOLD_OUT = """
SELECT (SELECT count(*) FROM seats WHERE event_id = $1)
       + (SELECT coalesce(sum(quantity), 0) FROM price_tiers WHERE event_id = $1 AND quantity IS NOT NULL)
       <= (SELECT count(*) FROM tickets WHERE event_id = $1) AS sold_out
"""

MARK_SOLD_OUT = """
WITH changed AS (
    UPDATE events SET status = 'sold_out', updated_at = now() WHERE id = $1 AND status = 'on_sale'
    RETURNING id
), announced AS (
    INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
    SELECT $2::uuid, 'SoldOut', $1::text, $3::text::jsonb FROM changed
    ON CONFLICT (event_id) DO NOTHING
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM changed)
"""


CONFIRMED_ORDERS = """
SELECT o.id::text AS order_id, o.user_id::text AS user_id, o.email, o.total AS amount, o.currency,
       p.charge_id, p.gateway
FROM orders o JOIN payments p ON p.order_id = o.id
WHERE o.event_id = $1 AND o.status = 'confirmed' AND NOT (o.id = ANY($3::uuid[]))
ORDER BY o.created_at, o.id
LIMIT $2
"""

MARK_REFUNDED = """
WITH refunded AS (
    UPDATE orders SET status = 'refunded' WHERE id = $1 AND status = 'confirmed' RETURNING id
), paid_back AS (
    UPDATE payments SET status = 'refunded', refund_id = $2, refunded_at = now()
    WHERE order_id = $1 AND EXISTS (SELECT 1 FROM refunded)
    RETURNING 1
)
INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
SELECT $3::uuid, 'OrderRefunded', $1::text, $4::text::jsonb FROM refunded
ON CONFLICT (event_id) DO NOTHING
RETURNING id
"""


class DueRefund(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    user_id: str
    email: str
    amount: int
    currency: str
    charge_id: str
    gateway: str


def _refusal(exc: asyncpg.IntegrityConstraintViolationError) -> CommitRefused:
    constraint = getattr(exc, "constraint_name", None) or ""
    reason = _CONSTRAINT_REASONS.get(constraint)
    if reason is None:
        if isinstance(exc, asyncpg.ForeignKeyViolationError):
            reason = "missing_reference"
        else:
            raise exc
    return CommitRefused(reason, constraint)


class OrderStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def commit_purchase(self, order: NewOrder) -> int | None:
        """Commit the whole purchase; returns GA tickets left in the tier (None for seats).

        Raises CommitRefused (a constraint said no; nothing was written), DependencyUnavailable
        (no connection, or the statement failed: nothing was written) or CommitOutcomeUnknown (the
        connection died while the statement ran: it may have committed)."""
        tickets = order.tickets
        try:
            conn = await self.pool.acquire()
        except DB_DOWN as exc:
            raise DependencyUnavailable("the order database is unreachable", retry_after_s=1) from exc
        try:
            row = await conn.fetchrow(
                COMMIT_PURCHASE,
                order.id, order.user_id, order.event_id, order.hold_id, order.subtotal, order.discount,
                order.total, order.currency, order.discount_code_id, order.email,
                [t.id for t in tickets], [t.seat for t in tickets], [t.tier for t in tickets],
                [t.price for t in tickets], [t.code for t in tickets],
                order.ga_tier, order.ga_quantity, len(tickets), order.account_limit,
                order.gateway, order.charge_id, order.outbox_payload.decode(),
                order.idempotency_key, order.fingerprint, order.response, order.gateway_key,
                *(attempt_of(order.gateway_key) if order.gateway_key is not None else (None, None)),
            )
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _refusal(exc) from exc
        except (*DB_DOWN, asyncpg.OperatorInterventionError) as exc:  # e.g. the backend was terminated
            raise CommitOutcomeUnknown("the order database went away during the purchase; retry with the "
                                       "same Idempotency-Key", retry_after_s=2) from exc
        except asyncpg.PostgresError as exc:  # anything else: the statement failed, nothing was written
            raise DependencyUnavailable(f"the order could not be stored ({type(exc).__name__})",
                                        retry_after_s=1) from exc
        finally:
            await self.pool.release(conn)
        assert row is not None
        ga_left: int | None = row["ga_left"]
        return ga_left

    async def announce(self, outbox_event_id: str, event_type: str, aggregate_id: str, payload: bytes) -> None:
        """One outbox row on its own (facts with no other write, e.g. PaymentFailed); a repeat is a no-op."""
        await self.pool.execute(ANNOUNCE, outbox_event_id, event_type, aggregate_id, payload.decode())

    async def replay(self, user_id: str, key: str) -> StoredResponse | None:
        try:
            row = await self.pool.fetchrow(REPLAY, user_id, key)
        except DB_DOWN as exc:
            raise DependencyUnavailable("the order database is unreachable", retry_after_s=1) from exc
        return None if row is None else StoredResponse(row["fingerprint"], row["status"], bytes(row["response"]))

    async def order_of_purchase(self, user_id: str, key: str, hold_id: str) -> tuple[str | None, str | None,
                                                                                    str | None]:
        """(order id recorded for the Idempotency-Key, order id of the hold, that order's charge id)."""
        row = await self.pool.fetchrow(ORDER_OF_PURCHASE, user_id, key, hold_id)
        assert row is not None
        return row["by_key"], row["by_hold"], row["hold_charge_id"]

    # ------------------------------------------------------------ events (read-only here)
    async def event_owner(self, event_id: int) -> tuple[str, str, str]:
        """(organizer_id, currency, status) of an event; EventNotFound otherwise."""
        row = await self.pool.fetchrow(EVENT_OWNER, event_id)
        if row is None:
            raise EventNotFound(f"no event {event_id}")
        return row["organizer_id"], row["currency"], row["status"]

    async def is_sold_out(self, event_id: int) -> bool:
        return bool(await self.pool.fetchval(EVENT_SOLD_OUT, event_id))

    async def mark_sold_out(self, event_id: int, outbox_event_id: str, payload: bytes) -> bool:
        """Event status on_sale -> sold_out and one SoldOut outbox row with it; True if this call changed
        it (the status decides: of concurrent callers one changes it, and an event back on sale after
        its waiting list (docs/waitlist.md) sells out again with a new row)."""
        return bool(await self.pool.fetchval(MARK_SOLD_OUT, event_id, outbox_event_id, payload.decode()))

    # ------------------------------------------------------------ discounts
    async def get_discount(self, event_id: int, code: str) -> Discount | None:
        row = await self.pool.fetchrow(GET_DISCOUNT, event_id, code)
        return None if row is None else msgspec.convert(dict(row), Discount)

    async def create_discount(self, event_id: int, code: str, kind: str, value: int, max_uses: int,
                              valid_from: dt.datetime | None, valid_until: dt.datetime | None) -> Discount | None:
        """The new code, or None when the event already has one with this name."""
        row = await self.pool.fetchrow(CREATE_DISCOUNT, event_id, code, kind, value, max_uses, valid_from,
                                       valid_until)
        return None if row is None else msgspec.convert(dict(row), Discount)

    # ------------------------------------------------------------ orders, tickets, check-in
    async def get_order(self, order_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(GET_ORDER, order_id)
        if row is None:
            return None
        out = dict(row)
        out["tickets"] = msgspec.json.decode(out["tickets"]) if isinstance(out["tickets"], str) else out["tickets"]
        return out

    # ------------------------------------------------------------ refunds (cancelled events)
    async def confirmed_orders(self, event_id: int, limit: int, skip: Sequence[str] = ()) -> list[DueRefund]:
        rows = await self.pool.fetch(CONFIRMED_ORDERS, event_id, limit, list(skip))
        return [DueRefund(order_id=r["order_id"], user_id=r["user_id"], email=r["email"], amount=r["amount"],
                          currency=r["currency"].strip(), charge_id=r["charge_id"], gateway=r["gateway"])
                for r in rows]

    async def mark_refunded(self, order_id: str, refund_id: str, outbox_event_id: str, payload: bytes) -> bool:
        """Order and payment refunded, OrderRefunded announced; False if it was not confirmed."""
        return await self.pool.fetchval(MARK_REFUNDED, order_id, refund_id, outbox_event_id,
                                        payload.decode()) is not None
