"""WaitlistStore: the waiting list's rows in PostgreSQL (migration 0016_waitlist.sql), the only code
that knows their SQL.

The worker's offering (ticketing/waitlist/offering.py) works one event at a time inside
:meth:`WaitlistStore.event_turn`: a transaction holding the event's advisory lock, so two workers
never offer for the same event at once; the offers it records and the outbox rows announcing them
commit together.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec

EVENT_FACTS = """
SELECT status, organizer_id::text AS organizer_id, max_tickets_per_order, title, starts_at FROM events WHERE id = $1
"""

JOIN = """
WITH joined AS (
    INSERT INTO waitlist_entries (event_id, user_id, quantity) VALUES ($1, $2, $3)
    ON CONFLICT (event_id, user_id) DO UPDATE
        SET status = 'waiting', quantity = EXCLUDED.quantity, seq = nextval('waitlist_seq'), joined_at = now(),
            updated_at = now()
        WHERE waitlist_entries.status IN ('done', 'left')
    RETURNING id, seq
)
SELECT j.id, 1 + (SELECT count(*) FROM waitlist_entries w
                  WHERE w.event_id = $1 AND w.status = 'waiting' AND w.seq < j.seq) AS position
FROM joined j
"""

POSITION = """
SELECT e.status, e.quantity,
       CASE WHEN e.status = 'waiting' THEN 1 + (SELECT count(*) FROM waitlist_entries w
             WHERE w.event_id = e.event_id AND w.status = 'waiting' AND w.seq < e.seq) END AS position
FROM waitlist_entries e WHERE e.event_id = $1 AND e.user_id = $2
"""

LEAVE = """
UPDATE waitlist_entries SET status = 'left', updated_at = now()
WHERE event_id = $1 AND user_id = $2 AND status IN ('waiting', 'offered')
RETURNING id
"""

VOID_PENDING_OF_ENTRY = """
UPDATE waitlist_offers SET status = 'void', finished_at = now()
WHERE entry_id = $1 AND status = 'pending'
RETURNING hold_id
"""

OFFER_COLUMNS = """o.id::text AS id, o.event_id, o.entry_id, o.user_id::text AS user_id, o.hold_id, o.quantity,
       o.status, o.offered_at, o.expires_at, o.accepted_at"""

GET_OFFER = f"SELECT {OFFER_COLUMNS} FROM waitlist_offers o WHERE o.id = $1"

USER_OFFERS = f"""
SELECT {OFFER_COLUMNS} FROM waitlist_offers o
WHERE o.user_id = $1 AND o.status IN ('pending', 'accepted') AND o.expires_at > $2
ORDER BY o.offered_at, o.id
LIMIT 50
"""

ACCEPT = """
UPDATE waitlist_offers SET status = 'accepted', accepted_at = now()
WHERE id = $1 AND status = 'pending' AND expires_at > $2
RETURNING id
"""

STATS = """
SELECT (SELECT count(*) FROM waitlist_entries WHERE event_id = $1 AND status = 'waiting') AS waiting,
       (SELECT count(*) FROM waitlist_entries WHERE event_id = $1 AND status = 'offered') AS offered_now,
       count(o.id) AS offers,
       count(o.id) FILTER (WHERE o.status IN ('accepted', 'bought')) AS accepted,
       count(o.id) FILTER (WHERE o.status = 'bought') AS bought,
       count(o.id) FILTER (WHERE o.status = 'expired') AS expired,
       coalesce(sum(o.quantity) FILTER (WHERE o.status = 'bought'), 0) AS tickets_bought
FROM waitlist_offers o WHERE o.event_id = $1
"""

# -- the worker's offering (in event_turn's transaction)
LOCK_EVENT = "SELECT pg_advisory_xact_lock(hashtextextended('waitlist:' || $1::bigint::text, 0))"

OPEN_OFFERS = f"""
SELECT {OFFER_COLUMNS} FROM waitlist_offers o WHERE o.event_id = $1 AND o.status IN ('pending', 'accepted')
ORDER BY o.offered_at
"""

FINISH_OFFER = """
WITH finished AS (
    UPDATE waitlist_offers SET status = $2, finished_at = now()
    WHERE id = $1 AND status IN ('pending', 'accepted')
    RETURNING entry_id
)
UPDATE waitlist_entries SET status = 'done', updated_at = now()
WHERE id = (SELECT entry_id FROM finished) AND status = 'offered'
RETURNING id
"""

NEXT_WAITING = """
SELECT id, user_id::text AS user_id, quantity FROM waitlist_entries
WHERE event_id = $1 AND status = 'waiting' AND NOT (id = ANY($2::bigint[]))
ORDER BY seq
LIMIT 1
"""

RECORD_OFFER = """
WITH offered AS (
    UPDATE waitlist_entries SET status = 'offered', updated_at = now() WHERE id = $2 AND status = 'waiting'
    RETURNING id
), offer AS (
    INSERT INTO waitlist_offers (id, event_id, entry_id, user_id, hold_id, quantity, expires_at)
    SELECT $1, $3, id, $4, $5, $6, $7 FROM offered
    RETURNING id
)
INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
SELECT $1, 'WaitlistOfferMade', $1::text, $8::jsonb FROM offer
RETURNING id
"""

BACK_ON_SALE = """
WITH changed AS (
    UPDATE events SET status = 'on_sale', updated_at = now() WHERE id = $1 AND status = 'sold_out'
    RETURNING title, starts_at
)
INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
SELECT $2::uuid, 'EventUpdated', $1::text,
       jsonb_build_object('event_id', $1::text, 'fields', jsonb_build_array('status'), 'status', 'on_sale',
                          'title', title, 'starts_at', to_char(starts_at AT TIME ZONE 'UTC',
                                                               'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'),
                          'changed_at_ms', $3::bigint)
FROM changed
RETURNING id
"""

CLOSE_LIST = """
WITH voided AS (
    UPDATE waitlist_offers SET status = 'void', finished_at = now()
    WHERE event_id = $1 AND status IN ('pending', 'accepted')
    RETURNING id
)
UPDATE waitlist_entries SET status = 'left', updated_at = now()
WHERE event_id = $1 AND status IN ('waiting', 'offered')
RETURNING (SELECT count(*) FROM voided) AS voided
"""

BOUGHT_BY_ORDER = """
SELECT o.id::text AS id FROM waitlist_offers o JOIN orders r ON r.hold_id = o.hold_id
WHERE r.id = $1 AND o.status IN ('pending', 'accepted')
"""

ACTIVE_EVENTS = """
SELECT event_id FROM waitlist_entries WHERE status IN ('waiting', 'offered')
UNION
SELECT e.id FROM events e
WHERE e.status = 'sold_out' AND EXISTS (SELECT 1 FROM waitlist_entries w WHERE w.event_id = e.id)
ORDER BY 1
LIMIT $1
"""


class EventFacts(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    organizer_id: str
    max_tickets_per_order: int


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    user_id: str
    quantity: int


class OfferRow(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    event_id: int
    entry_id: int
    user_id: str
    hold_id: str
    quantity: int
    status: str
    offered_at: dt.datetime
    expires_at: dt.datetime
    accepted_at: dt.datetime | None


class Standing(msgspec.Struct, frozen=True, kw_only=True):
    """One account's place on an event's list: its entry's status, quantity and position (waiting only)."""

    status: str
    quantity: int
    position: int | None


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    waiting: int
    offered_now: int
    offers: int
    accepted: int
    bought: int
    expired: int
    tickets_bought: int


class NewOffer(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    event_id: int
    entry_id: int
    user_id: str
    hold_id: str
    quantity: int
    expires_at: dt.datetime
    announcement: dict[str, Any]  # the WaitlistOfferMade payload


def _offer(row: asyncpg.Record) -> OfferRow:
    return OfferRow(**dict(row))


class EventTurn:
    """The queries of one event's offering, on the connection holding its lock (see ``event_turn``)."""

    def __init__(self, conn: Any, event_id: int) -> None:
        self.conn = conn
        self.event_id = event_id

    async def facts(self) -> EventFacts | None:
        row = await self.conn.fetchrow(EVENT_FACTS, self.event_id)
        return None if row is None else EventFacts(status=row["status"], organizer_id=row["organizer_id"],
                                                   max_tickets_per_order=row["max_tickets_per_order"])

    async def open_offers(self) -> list[OfferRow]:
        return [_offer(r) for r in await self.conn.fetch(OPEN_OFFERS, self.event_id)]

    async def finish_offer(self, offer_id: str, status: str) -> None:
        """An open offer is over (``bought``, ``expired``); its entry's turn is done."""
        await self.conn.execute(FINISH_OFFER, uuid.UUID(offer_id), status)

    async def next_waiting(self, skip: Sequence[int]) -> Entry | None:
        row = await self.conn.fetchrow(NEXT_WAITING, self.event_id, list(skip))
        return None if row is None else Entry(id=row["id"], user_id=row["user_id"], quantity=row["quantity"])

    async def record_offer(self, offer: NewOffer) -> bool:
        """The offer, its entry marked offered, and its WaitlistOfferMade outbox row; False when the entry
        is no longer waiting (it left meanwhile: nothing written)."""
        return await self.conn.fetchval(
            RECORD_OFFER, uuid.UUID(offer.id), offer.entry_id, offer.event_id, uuid.UUID(offer.user_id),
            offer.hold_id, offer.quantity, offer.expires_at, json.dumps(offer.announcement)) is not None

    async def back_on_sale(self, outbox_id: str, now_ms: int) -> bool:
        """sold_out -> on_sale with an EventUpdated outbox row; False when the event was not sold out."""
        return await self.conn.fetchval(BACK_ON_SALE, self.event_id, outbox_id, now_ms) is not None

    async def close(self) -> int:
        """The event was cancelled: every entry leaves, every open offer is void. Returns offers voided."""
        rows = await self.conn.fetch(CLOSE_LIST, self.event_id)
        return int(rows[0]["voided"]) if rows else 0


class WaitlistStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def event_facts(self, event_id: int) -> EventFacts | None:
        return await EventTurn(self.pool, event_id).facts()

    async def join(self, event_id: int, user_id: str, quantity: int) -> int | None:
        """The new entry's position (1 = next), or None when the account is already on the list."""
        row = await self.pool.fetchrow(JOIN, event_id, uuid.UUID(user_id), quantity)
        return None if row is None else int(row["position"])

    async def standing(self, event_id: int, user_id: str) -> Standing | None:
        row = await self.pool.fetchrow(POSITION, event_id, uuid.UUID(user_id))
        return None if row is None else Standing(status=row["status"], quantity=row["quantity"],
                                                 position=row["position"])

    async def leave(self, event_id: int, user_id: str) -> list[str] | None:
        """Leave the list; returns the holds of the pending offers voided with it, None when not on it."""
        async with self.pool.acquire() as conn, conn.transaction():
            entry_id = await conn.fetchval(LEAVE, event_id, uuid.UUID(user_id))
            if entry_id is None:
                return None
            return [r["hold_id"] for r in await conn.fetch(VOID_PENDING_OF_ENTRY, entry_id)]

    async def get_offer(self, offer_id: str) -> OfferRow | None:
        try:
            key = uuid.UUID(offer_id)
        except ValueError:
            return None
        row = await self.pool.fetchrow(GET_OFFER, key)
        return None if row is None else _offer(row)

    async def user_offers(self, user_id: str, now: dt.datetime) -> list[OfferRow]:
        return [_offer(r) for r in await self.pool.fetch(USER_OFFERS, uuid.UUID(user_id), now)]

    async def accept(self, offer_id: str, now: dt.datetime) -> bool:
        return await self.pool.fetchval(ACCEPT, uuid.UUID(offer_id), now) is not None

    async def stats(self, event_id: int) -> Stats:
        row = await self.pool.fetchrow(STATS, event_id)
        assert row is not None  # an aggregate: always one row
        return Stats(**{k: int(v) for k, v in dict(row).items()})

    async def offers_bought_by_order(self, order_id: str) -> list[str]:
        try:
            key = uuid.UUID(order_id)
        except ValueError:
            return []
        return [r["id"] for r in await self.pool.fetch(BOUGHT_BY_ORDER, key)]

    async def active_event_ids(self, limit: int = 1000) -> list[int]:
        """Events with fans waiting or offers open, and sold-out events that had a list (the worker's
        periodic look: returned tickets of these are offered, or put back on sale)."""
        return [r["event_id"] for r in await self.pool.fetch(ACTIVE_EVENTS, limit)]

    @asynccontextmanager
    async def event_turn(self, event_id: int) -> AsyncIterator[EventTurn]:
        """A transaction holding the event's advisory lock (one offering per event at a time, across
        workers), committed when the block ends."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '10s'")
            await conn.execute(LOCK_EVENT, event_id)
            yield EventTurn(conn, event_id)
