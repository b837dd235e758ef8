"""Fan-out jobs (migration 0006 ``notification_jobs``): recorded once, worked until complete."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg
import msgspec

CREATE = """
INSERT INTO notification_jobs (job_id, kind, subject, details) VALUES ($1::uuid, $2, $3, $4::jsonb)
ON CONFLICT (job_id) DO NOTHING
RETURNING job_id
"""
OPEN = """
SELECT job_id::text AS job_id, kind, subject, details, created_at FROM notification_jobs
WHERE completed_at IS NULL ORDER BY created_at, job_id LIMIT $1
"""
COMPLETE = "UPDATE notification_jobs SET completed_at = now(), recipients = $2 WHERE job_id = $1::uuid"
GET = """
SELECT job_id::text AS job_id, kind, subject, details, created_at, completed_at, recipients
FROM notification_jobs WHERE job_id = $1::uuid
"""


class Job(msgspec.Struct, frozen=True):
    job_id: str
    kind: str
    subject: int
    details: dict[str, Any]
    created_at: dt.datetime
    completed_at: dt.datetime | None = None
    recipients: int | None = None


def _job(row: asyncpg.Record) -> Job:
    data = dict(row)
    details = data.pop("details")
    return Job(details=json.loads(details) if isinstance(details, str) else dict(details), **data)


class JobStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, job_id: uuid.UUID | str, kind: str, subject: int, details: dict[str, Any]) -> bool:
        """Record a fan-out; False when it was recorded before (a redelivery, a second scheduler pass)."""
        return await self.pool.fetchval(CREATE, str(job_id), kind, subject, json.dumps(details)) is not None

    async def open_jobs(self, limit: int = 50) -> list[Job]:
        return [_job(r) for r in await self.pool.fetch(OPEN, limit)]

    async def complete(self, job_id: str, recipients: int) -> None:
        await self.pool.execute(COMPLETE, job_id, recipients)

    async def get(self, job_id: uuid.UUID | str) -> Job | None:
        row = await self.pool.fetchrow(GET, str(job_id))
        return _job(row) if row else None
