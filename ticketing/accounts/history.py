"""A user's booking history (GET /api/users/me/orders and /tickets): read-only queries over
the ticketing tables (orders, tickets, events; migrations 0003/0004), newest first, with
keyset pagination (an opaque cursor, no OFFSET scans).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import msgspec

from stagedoor.errors import InvalidInput

MAX_PAGE = 200


class HistoryQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)] = 50
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class OrderSummary(msgspec.Struct, kw_only=True):
    id: str
    event_id: str
    event_title: str
    event_starts_at: datetime
    status: str
    total: int
    currency: str
    tickets: int
    created_at: datetime


class OwnedTicket(msgspec.Struct, kw_only=True):
    id: str
    order_id: str
    event_id: str
    event_title: str
    event_starts_at: datetime
    seat: str | None
    tier: str
    code: str
    checked_in_at: datetime | None


class OrderPage(msgspec.Struct, kw_only=True):
    items: list[OrderSummary]
    next_cursor: str | None


class TicketPage(msgspec.Struct, kw_only=True):
    items: list[OwnedTicket]
    next_cursor: str | None


class InvalidHistoryCursor(InvalidInput):
    code = "invalid-cursor"
    title = "Invalid pagination cursor"


# Newest first; ties on created_at broken by id. $2/$3: the last row of the previous page.
MY_ORDERS = """
SELECT o.id::text AS id, o.event_id::text AS event_id, e.title AS event_title, e.starts_at AS event_starts_at,
       o.status, o.total, o.currency::text AS currency, o.created_at,
       (SELECT count(*) FROM tickets t WHERE t.order_id = o.id)::int AS tickets
FROM orders o JOIN events e ON e.id = o.event_id
WHERE o.user_id = $1 AND ($2::timestamptz IS NULL OR (o.created_at, o.id) < ($2, $3::uuid))
ORDER BY o.created_at DESC, o.id DESC
LIMIT $4
"""
MY_TICKETS = """
SELECT t.id::text AS id, t.order_id::text AS order_id, t.event_id::text AS event_id, e.title AS event_title,
       e.starts_at AS event_starts_at, t.seat_id AS seat, t.tier, t.code, t.checked_in_at,
       o.created_at AS sort_at
FROM tickets t JOIN orders o ON o.id = t.order_id JOIN events e ON e.id = t.event_id
WHERE o.user_id = $1 AND o.status = 'confirmed'
  AND ($2::timestamptz IS NULL OR (o.created_at, t.id) < ($2, $3::uuid))
ORDER BY o.created_at DESC, t.id DESC
LIMIT $4
"""


def encode_cursor(at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.timestamp():.6f}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    if not cursor:
        return None, None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, row_id = raw.partition("|")
        return datetime.fromtimestamp(float(stamp), UTC), uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise InvalidHistoryCursor("cursor is not one this server issued",
                                   errors=[{"field": "cursor", "message": "invalid"}]) from None


class UserHistoryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def orders(self, user_id: str, query: HistoryQuery) -> OrderPage:
        after_at, after_id = decode_cursor(query.cursor)
        rows = await self._pool.fetch(MY_ORDERS, uuid.UUID(user_id), after_at, after_id, query.limit + 1)
        items = [OrderSummary(**dict(r)) for r in rows[:query.limit]]
        more = len(rows) > query.limit
        return OrderPage(items=items, next_cursor=encode_cursor(items[-1].created_at, items[-1].id) if more else None)

    async def tickets(self, user_id: str, query: HistoryQuery) -> TicketPage:
        after_at, after_id = decode_cursor(query.cursor)
        rows = await self._pool.fetch(MY_TICKETS, uuid.UUID(user_id), after_at, after_id, query.limit + 1)
        page = rows[:query.limit]
        items = [OwnedTicket(**{k: v for k, v in dict(r).items() if k != "sort_at"}) for r in page]
        more = len(rows) > query.limit
        return TicketPage(items=items,
                          next_cursor=encode_cursor(page[-1]["sort_at"], items[-1].id) if more else None)
