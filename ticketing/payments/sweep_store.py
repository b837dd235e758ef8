"""SweepStore: the SQL of the gateway sweep (migration 0013; ticketing/payments/sweep.py).

Where the sweep stands per gateway (``gateway_sweeps``: what was compared, the window being listed and
the position in its listing, leased by one sweeper at a time) and, for a page of the gateway's
payments, what our records say of each (its charge attempt and settled payments row).
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from ticketing.payments.records import attempt_of

# Leased when free (or its lease ran out); the first lease of a gateway starts its sweep at $2.
LEASE = """
INSERT INTO gateway_sweeps AS s (gateway, swept_until, lease_token, leased_until)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (gateway) DO UPDATE SET lease_token = excluded.lease_token, leased_until = excluded.leased_until,
                                    updated_at = now()
WHERE s.leased_until IS NULL OR s.leased_until < now()
RETURNING swept_until, window_from, window_to, position
"""

OPEN_WINDOW = """
UPDATE gateway_sweeps SET window_from = $3, window_to = $4, position = NULL, updated_at = now()
WHERE gateway = $1 AND lease_token = $2
RETURNING 1
"""

# After each page: the listing goes on from here (a sweeper that dies repeats one page at most), and the
# lease is extended.
ADVANCE = """
UPDATE gateway_sweeps SET position = $3, leased_until = now() + make_interval(secs => $4), updated_at = now()
WHERE gateway = $1 AND lease_token = $2
RETURNING 1
"""

FINISH_WINDOW = """
UPDATE gateway_sweeps SET swept_until = window_to, window_from = NULL, window_to = NULL, position = NULL,
                          updated_at = now()
WHERE gateway = $1 AND lease_token = $2 AND window_to IS NOT NULL
RETURNING swept_until
"""

RELEASE = """
UPDATE gateway_sweeps SET lease_token = NULL, leased_until = NULL, updated_at = now()
WHERE gateway = $1 AND lease_token = $2
"""

# Each listed payment with its key's attempt and its settled payments row (by the key, else by the
# gateway's id of the charge: payments.charge_id is unique).
STANDINGS = """
SELECT k.intent_id, a.state AS attempt_state, a.charge_id AS attempt_charge_id, a.amount AS attempt_amount,
       trim(a.currency) AS attempt_currency, a.event_id AS attempt_event_id,
       p.gateway_key AS payment_key, p.status AS payment_status, p.charge_id AS payment_charge_id,
       p.amount AS payment_amount, trim(p.currency) AS payment_currency, p.amount_refunded, p.gateway,
       p.order_id::text AS order_id, coalesce(p.event_id, o.event_id) AS payment_event_id,
       o.status AS order_status
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[]) AS k(intent_id, gateway_key, purchase_key, seq)
LEFT JOIN charge_attempts a ON a.purchase_key = k.purchase_key AND a.seq = k.seq
LEFT JOIN LATERAL (
    SELECT * FROM payments p
    WHERE (k.gateway_key IS NOT NULL AND p.gateway_key = k.gateway_key) OR p.charge_id = k.intent_id
    ORDER BY (p.gateway_key = k.gateway_key) DESC NULLS LAST
    LIMIT 1
) p ON true
LEFT JOIN orders o ON o.id = p.order_id
"""


class SweepState(msgspec.Struct, frozen=True, kw_only=True):
    swept_until: int
    window_from: int | None
    window_to: int | None
    position: str | None


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """What our records say of one payment at the gateway (all None: nothing)."""

    attempt_state: str | None = None  # pending | unknown | failed
    attempt_charge_id: str | None = None
    attempt_amount: int | None = None
    attempt_currency: str | None = None
    attempt_event_id: int | None = None
    payment_key: str | None = None
    payment_status: str | None = None  # succeeded | refunding | refunded | refund_failed
    payment_charge_id: str | None = None
    payment_amount: int | None = None
    payment_currency: str | None = None
    amount_refunded: int | None = None
    gateway: str | None = None
    order_id: str | None = None
    payment_event_id: int | None = None
    order_status: str | None = None


def _key_parts(gateway_key: str | None) -> tuple[str | None, int | None]:
    if gateway_key is None:
        return None, None
    try:
        return attempt_of(gateway_key)
    except ValueError:
        return None, None


class SweepStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def lease(self, gateway: str, token: uuid.UUID, start_at: int, lease_s: float) -> SweepState | None:
        """The gateway's sweep state, leased to ``token`` for ``lease_s``; None while another sweeper holds
        it. A gateway swept for the first time starts at ``start_at``."""
        row = await self.pool.fetchrow(LEASE, gateway, start_at, token, float(lease_s))
        return None if row is None else msgspec.convert(dict(row), SweepState)

    async def open_window(self, gateway: str, token: uuid.UUID, window_from: int, window_to: int) -> bool:
        return await self.pool.fetchval(OPEN_WINDOW, gateway, token, window_from, window_to) is not None

    async def advance(self, gateway: str, token: uuid.UUID, position: str, lease_s: float) -> bool:
        return await self.pool.fetchval(ADVANCE, gateway, token, position, float(lease_s)) is not None

    async def finish_window(self, gateway: str, token: uuid.UUID) -> int | None:
        """The window is compared: swept_until moves to its end (returned); None when the lease was lost."""
        until: int | None = await self.pool.fetchval(FINISH_WINDOW, gateway, token)
        return until

    async def release(self, gateway: str, token: uuid.UUID) -> None:
        await self.pool.execute(RELEASE, gateway, token)

    async def recorded(self, payments: list[tuple[str, str | None]]) -> dict[str, Recorded]:
        """(gateway payment id, its gateway key) -> what our records say of it."""
        if not payments:
            return {}
        parts = [_key_parts(key) for _, key in payments]
        rows = await self.pool.fetch(STANDINGS, [p for p, _ in payments], [k for _, k in payments],
                                     [p for p, _ in parts], [s for _, s in parts])
        out: dict[str, Recorded] = {}
        for row in rows:
            values = dict(row)
            intent_id = values.pop("intent_id")
            out[intent_id] = msgspec.convert(values, Recorded)
        return out
