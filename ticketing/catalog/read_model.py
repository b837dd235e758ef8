"""The event search's availability read model, kept by the worker's ``read_model`` bus group.

Per tier: capacity and tickets sold; per event: ``tickets_left`` and the price range of what is
left (migration 0005), from EventCreated/EventUpdated/EventPublished/EventCancelled/SoldOut (rows
built) and OrderConfirmed (+ tickets) / OrderRefunded (- tickets). Each delivery's effect is
exactly-once: ``bus_applied`` (group, event id) is inserted in the same transaction. "Available"
means not sold: holds are short-lived Redis state (HoldPlaced is best-effort), so BookingExpired
changes nothing here and is not subscribed.
"""

from __future__ import annotations

import time
import uuid

import asyncpg

from stagedoor.bus_envelope import Envelope

APPLIED_RETENTION_S = 7 * 86_400
PURGE_EVERY_S = 600

ENSURE_TIERS = """
INSERT INTO event_tier_availability (event_id, tier, price, capacity, sold)
SELECT t.event_id, t.code, t.price,
       coalesce(t.quantity, (SELECT count(*) FROM seats s WHERE s.event_id = t.event_id AND s.tier_code = t.code)), 0
FROM price_tiers t
WHERE t.event_id = $1 AND NOT EXISTS (SELECT 1 FROM event_tier_availability a WHERE a.event_id = $1)
ON CONFLICT (event_id, tier) DO NOTHING
"""
ADD_SOLD = """
UPDATE event_tier_availability a SET sold = greatest(0, a.sold + $3 * c.n)
FROM (SELECT tier, count(*)::int AS n FROM tickets WHERE order_id = $2 GROUP BY tier) c
WHERE a.event_id = $1 AND a.tier = c.tier
"""
SUMMARIZE = """
UPDATE events e SET tickets_left = a.left_, available_min_price = a.min_p, available_max_price = a.max_p
FROM (SELECT coalesce(sum(greatest(capacity - sold, 0)), 0)::int AS left_,
             min(price) FILTER (WHERE sold < capacity) AS min_p, max(price) FILTER (WHERE sold < capacity) AS max_p
      FROM event_tier_availability WHERE event_id = $1) a
WHERE e.id = $1
"""
APPLY = """
INSERT INTO bus_applied (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true
"""
PURGE_APPLIED = "DELETE FROM bus_applied WHERE applied_at < now() - make_interval(secs => $1)"


class ReadModel:
    """Handler of the ``read_model`` group."""

    event_types = frozenset({"EventCreated", "EventUpdated", "EventPublished", "EventCancelled", "SoldOut",
                             "OrderConfirmed", "OrderRefunded"})

    def __init__(self, pool: asyncpg.Pool, group: str = "read_model") -> None:
        self.pool = pool
        self.group = group
        self._purged_at = 0.0

    async def __call__(self, env: Envelope) -> None:
        raw_event = env.payload.get("event_id")
        if raw_event is None or not str(raw_event).isdigit():
            return
        event_id = int(raw_event)
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(APPLY, self.group, uuid.UUID(env.event_id)):
                return  # applied before (a redelivery)
            await conn.execute(ENSURE_TIERS, event_id)
            if env.event_type in ("OrderConfirmed", "OrderRefunded"):
                sign = 1 if env.event_type == "OrderConfirmed" else -1
                await conn.execute(ADD_SOLD, event_id, uuid.UUID(str(env.payload["order_id"])), sign)
            await conn.execute(SUMMARIZE, event_id)
        if time.monotonic() - self._purged_at > PURGE_EVERY_S:
            self._purged_at = time.monotonic()
            await self.pool.execute(PURGE_APPLIED, float(APPLIED_RETENTION_S))
