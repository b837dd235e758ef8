"""What the notifications read from PostgreSQL (the truth), by the ids an event carries:
an order with its tickets, an event with its venue, the holders of an event's tickets, the
events starting soon, and a payment flag with its event's organizer. The only place that knows this SQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

SELECT_EVENT = """
SELECT e.id, e.status, e.title, e.description, e.category, e.starts_at, e.ends_at, e.currency,
       v.name AS venue_name, v.city AS venue_city, v.address AS venue_address
FROM events e JOIN venues v ON v.id = e.venue_id
WHERE e.id = $1
"""
SELECT_ORDER = """
SELECT o.id::text AS id, o.event_id, o.user_id::text AS user_id, o.status, o.email, o.total, o.currency,
       o.created_at, u.name AS user_name
FROM orders o JOIN users u ON u.id = o.user_id
WHERE o.id = $1::uuid
"""
SELECT_ORDER_TICKETS = """
SELECT t.id::text AS id, t.seat_id, t.tier, t.price, t.code,
       s.section, s.row_label, s.number, pt.name AS tier_name
FROM tickets t
LEFT JOIN seats s ON s.event_id = t.event_id AND s.id = t.seat_id
LEFT JOIN price_tiers pt ON pt.event_id = t.event_id AND pt.code = t.tier
WHERE t.order_id = $1::uuid
ORDER BY s.position NULLS LAST, t.id
"""
# One message per person: addresses compared case-insensitively (the lowest-cased one is used).
SELECT_HOLDERS = """
SELECT DISTINCT lower(email) AS email FROM orders
WHERE event_id = $1 AND status = ANY($2::text[])
ORDER BY 1
"""
SELECT_STARTING = """
SELECT id, starts_at FROM events
WHERE status IN ('on_sale', 'sold_out') AND starts_at > $1 AND starts_at <= $2
ORDER BY starts_at, id
LIMIT $3
"""

# A payment flag (migration 0012) and who is told: the organizer of the flag's event.
SELECT_FLAG = """
SELECT f.id, f.kind, f.event_id, f.order_id::text AS order_id, f.charge_id, f.details::text AS details,
       f.created_at, u.email AS organizer_email
FROM payment_flags f JOIN events e ON e.id = f.event_id JOIN users u ON u.id = e.organizer_id
WHERE f.id = $1
"""

HOLDING = ("confirmed",)
HOLDING_OR_REFUNDED = ("confirmed", "refunded")  # a cancelled event's holders, refunds in progress or done


class EventInfo(msgspec.Struct, frozen=True):
    id: int
    status: str
    title: str
    description: str
    category: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    currency: str
    venue_name: str
    venue_city: str
    venue_address: str

    @property
    def location(self) -> str:
        return ", ".join(p for p in (self.venue_name, self.venue_address, self.venue_city) if p)


class TicketInfo(msgspec.Struct, frozen=True):
    id: str
    seat_id: str | None
    tier: str
    tier_name: str
    price: int
    code: str
    section: str | None
    row_label: str | None
    number: str | None

    @property
    def label(self) -> str:
        if self.seat_id is None:
            return f"{self.tier_name} (general admission)"
        return f"{self.tier_name}: section {self.section}, row {self.row_label}, seat {self.number}"


class OrderInfo(msgspec.Struct, frozen=True):
    id: str
    event_id: int
    user_id: str
    status: str
    email: str
    total: int
    currency: str
    created_at: dt.datetime
    user_name: str
    tickets: tuple[TicketInfo, ...]


class FlagInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: str  # dispute | amount_mismatch | refund_missing
    event_id: int
    order_id: str | None
    charge_id: str | None
    details: dict[str, object]
    created_at: dt.datetime
    organizer_email: str


SELECT_WAITLIST_OFFER = """
SELECT o.id::text AS id, o.event_id, o.quantity, o.status, o.expires_at, u.email
FROM waitlist_offers o JOIN users u ON u.id = o.user_id
WHERE o.id = $1
"""


class OfferInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A waiting-list offer as its e-mail tells it (ticketing/waitlist/)."""

    id: str
    event_id: int
    quantity: int
    status: str  # pending | accepted | bought | expired | void
    expires_at: dt.datetime
    email: str


class Recipients:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def event(self, event_id: int) -> EventInfo | None:
        row = await self.pool.fetchrow(SELECT_EVENT, event_id)
        return EventInfo(**dict(row)) if row else None

    async def order(self, order_id: str) -> OrderInfo | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(SELECT_ORDER, order_id)
            if row is None:
                return None
            tickets = await conn.fetch(SELECT_ORDER_TICKETS, order_id)
        return OrderInfo(**dict(row), tickets=tuple(
            TicketInfo(id=t["id"], seat_id=t["seat_id"], tier=t["tier"], tier_name=t["tier_name"] or t["tier"],
                       price=t["price"], code=t["code"], section=t["section"], row_label=t["row_label"],
                       number=t["number"]) for t in tickets))

    async def payment_flag(self, flag_id: int) -> FlagInfo | None:
        row = await self.pool.fetchrow(SELECT_FLAG, flag_id)
        if row is None:
            return None
        out = dict(row)
        out["details"] = msgspec.json.decode(out["details"])
        return msgspec.convert(out, FlagInfo)

    async def waitlist_offer(self, offer_id: str) -> OfferInfo | None:
        try:
            key = uuid.UUID(offer_id)
        except ValueError:
            return None
        row = await self.pool.fetchrow(SELECT_WAITLIST_OFFER, key)
        return None if row is None else msgspec.convert(dict(row), OfferInfo)

    async def holders(self, event_id: int, statuses: Sequence[str] = HOLDING) -> list[str]:
        """Distinct e-mail addresses of the event's orders in these statuses."""
        rows = await self.pool.fetch(SELECT_HOLDERS, event_id, list(statuses))
        return [r["email"] for r in rows]

    async def events_starting(self, after: dt.datetime, until: dt.datetime, limit: int = 500
                              ) -> list[tuple[int, dt.datetime]]:
        rows = await self.pool.fetch(SELECT_STARTING, after, until, limit)
        return [(r["id"], r["starts_at"]) for r in rows]
