"""The sent-log (migration 0006): who was sent what, for which bus event.

Exactly-once effect over at-least-once delivery: ``claim`` a (event_id, recipient, kind) row
before sending, ``mark_sent`` after the server accepted the message. A redelivery's claim
finds the row ``sent`` and returns nothing to do. The claim is one statement
(``INSERT .. ON CONFLICT DO UPDATE .. WHERE``), so two consumers racing over the same
envelope get disjoint claims: never two sends of one row while its claim is fresh.

At-most-twice window (documented, not closed): a sender that dies after the server accepted
a message and before ``mark_sent`` committed leaves the row ``sending``; once the claim is
older than ``stale_s`` the next delivery claims it again and sends a second copy. SMTP has
no idempotency key, so this window cannot be closed from our side; it is as small as one
UPDATE round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Literal

import asyncpg
import msgspec

Channel = Literal["email", "sms"]

CLAIM = """
INSERT INTO notifications AS n (event_id, recipient, kind, channel, status, attempts, claimed_at)
SELECT $1::uuid, r, $3, $4, 'sending', 1, now() FROM unnest($2::text[]) AS r
ON CONFLICT (event_id, recipient, kind) DO UPDATE
   SET status = 'sending', attempts = n.attempts + 1, claimed_at = now(), error = NULL
 WHERE (n.status = 'failed' AND n.attempts < $6)
    OR (n.status = 'sending' AND n.claimed_at < now() - make_interval(secs => $5))
RETURNING n.recipient, n.attempts
"""

MARK_SENT = """
UPDATE notifications SET status = 'sent', sent_at = now(), error = NULL
 WHERE event_id = $1::uuid AND recipient = $2 AND kind = $3 AND status = 'sending'
"""

MARK_FAILED = """
UPDATE notifications SET status = 'failed', error = left($4, 500)
 WHERE event_id = $1::uuid AND recipient = $2 AND kind = $3 AND status = 'sending'
"""

UNFINISHED = """
SELECT recipient, status, attempts FROM notifications
 WHERE event_id = $1::uuid AND kind = $2 AND recipient = ANY($3::text[])
   AND (status = 'sending' OR (status = 'failed' AND attempts < $4))
"""

STATUS = "SELECT status, attempts, error FROM notifications WHERE event_id = $1::uuid AND recipient = $2 AND kind = $3"

CLAIM_CHUNK = 1000  # recipients per claim statement (bounded parameters, bounded lock sets)


class Claim(msgspec.Struct, frozen=True):
    recipient: str
    attempt: int


class Row(msgspec.Struct, frozen=True):
    status: str
    attempts: int
    error: str | None


class SentLog:
    def __init__(self, pool: asyncpg.Pool, *, stale_s: int, max_attempts: int) -> None:
        self.pool = pool
        self.stale_s = stale_s
        self.max_attempts = max_attempts

    async def claim(self, event_id: uuid.UUID | str, kind: str, channel: Channel,
                    recipients: Sequence[str]) -> list[Claim]:
        """The recipients this caller now owns (to send to); the others are sent, given up, or
        being sent by someone else right now."""
        claims: list[Claim] = []
        unique = sorted(set(recipients))  # sorted: concurrent claimers lock rows in one order
        for i in range(0, len(unique), CLAIM_CHUNK):
            rows = await self.pool.fetch(CLAIM, str(event_id), unique[i:i + CLAIM_CHUNK], kind, channel,
                                         float(self.stale_s), self.max_attempts)
            claims.extend(Claim(r["recipient"], r["attempts"]) for r in rows)
        return claims

    async def mark_sent(self, event_id: uuid.UUID | str, recipient: str, kind: str) -> None:
        await self.pool.execute(MARK_SENT, str(event_id), recipient, kind)

    async def mark_failed(self, event_id: uuid.UUID | str, recipient: str, kind: str, error: str) -> None:
        await self.pool.execute(MARK_FAILED, str(event_id), recipient, kind, error)

    async def unfinished(self, event_id: uuid.UUID | str, kind: str, recipients: Sequence[str]) -> list[str]:
        """Recipients still being sent (by someone else) or failed with attempts left."""
        rows = await self.pool.fetch(UNFINISHED, str(event_id), kind, list(recipients), self.max_attempts)
        return [r["recipient"] for r in rows]

    async def status(self, event_id: uuid.UUID | str, recipient: str, kind: str) -> Row | None:
        row = await self.pool.fetchrow(STATUS, str(event_id), recipient, kind)
        return Row(row["status"], row["attempts"], row["error"]) if row else None
