"""TicketStore: the tickets' SQL for reads by id and check-in at the door."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

GET_TICKET = """
SELECT t.id::text AS id, t.code, t.event_id, o.user_id::text AS user_id, e.organizer_id::text AS organizer_id
FROM tickets t JOIN orders o ON o.id = t.order_id JOIN events e ON e.id = t.event_id
WHERE t.id = $1
"""

# Atomic check-in (after authorization), with the TicketCheckedIn outbox row of a successful
# scan in the same statement: the UPDATE's "checked_in_at IS NULL" decides the one
# winner among concurrent scans (the losers re-check the row after the winner commits and match
# nothing); "before" tells a second scan when the first one happened.
CHECK_IN_ANNOUNCED = """
WITH ticket AS (
    SELECT t.id, t.checked_in_at, t.seat_id, t.tier, o.status
    FROM tickets t JOIN orders o ON o.id = t.order_id
    WHERE t.id = $1 AND t.event_id = $2
), scanned AS (
    UPDATE tickets SET checked_in_at = now()
    WHERE id = $1 AND checked_in_at IS NULL AND EXISTS (SELECT 1 FROM ticket WHERE status = 'confirmed')
    RETURNING id, event_id, checked_in_at
), announced AS (
    INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
    SELECT $3, 'TicketCheckedIn', s.id::text,
           jsonb_build_object('ticket_id', s.id::text, 'event_id', s.event_id::text,
                              'checked_in_at', to_char(s.checked_in_at AT TIME ZONE 'UTC',
                                                       'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    FROM scanned s
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
)
SELECT ticket.checked_in_at AS before, ticket.status, ticket.seat_id, ticket.tier,
       (SELECT checked_in_at FROM scanned) AS now, (SELECT count(*) FROM announced) AS announced
FROM ticket
"""


class TicketStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get_ticket(self, ticket_id: str) -> dict[str, Any] | None:
        """The ticket with its code, its buyer and its event's organizer; None if there is none."""
        row = await self.pool.fetchrow(GET_TICKET, ticket_id)
        return None if row is None else dict(row)

    async def check_in(self, ticket_id: str, event_id: int, outbox_event_id: uuid.UUID) -> asyncpg.Record | None:
        """Check the ticket in once (see CHECK_IN_ANNOUNCED); None if the ticket is not the event's."""
        return await self.pool.fetchrow(CHECK_IN_ANNOUNCED, ticket_id, event_id, outbox_event_id)
