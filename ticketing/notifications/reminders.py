"""Reminders: every ``reminder_interval_s`` the worker looks for events starting within
``reminder_lead_time_s`` and records one reminder job per (event, start time). Recording is
idempotent (the job id is derived from both), so any number of passes, on any number of
worker replicas, make one job; the job loop sends it once per holder (sent-log).

Known limits: a ticket bought after its event's reminder job completed gets no reminder (the
buyer was just there); an event rescheduled into the window is reminded for its new start.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from ticketing.notifications.service import Notifications, reminder_job_id


async def schedule_reminders(n: Notifications, clock: Callable[[], float] = time.time) -> int:
    """One scheduler pass; returns how many reminder jobs it recorded (0 when all were known)."""
    now = dt.datetime.fromtimestamp(clock(), dt.UTC)
    until = now + dt.timedelta(seconds=n.settings.reminder_lead_time_s)
    recorded = 0
    for event_id, starts_at in await n.recipients.events_starting(now, until):
        if await n.record_job(reminder_job_id(event_id, starts_at), "reminder", event_id,
                              {"starts_at": starts_at.isoformat()}):
            recorded += 1
    return recorded
