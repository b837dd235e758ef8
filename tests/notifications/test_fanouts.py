"""Fan-outs to every ticket holder: cancellation (2,000 tickets, every holder exactly once,
refund notice), event updates (only news holders care about), reminders (once per holder, however
often and on however many workers the scheduler runs)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

from tests.support.notifications import envelope, metric
from ticketing.notifications.handlers import on_event_cancelled, on_event_updated
from ticketing.notifications.reminders import schedule_reminders
from ticketing.notifications.service import reminder_job_id


async def _drain_jobs(*workers: Any, budget_s: float = 20.0) -> None:
    """Run job passes on every worker at once until no job is open."""
    for _ in range(50):
        await asyncio.gather(*(w.run_open_jobs(budget_s) for w in workers))
        if not await workers[0].jobs.open_jobs():
            return
    raise AssertionError("jobs still open after 50 passes")


async def test_cancelling_an_event_with_2000_tickets_notifies_every_holder_exactly_once(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any, pool: Any) -> None:
    settings = mail_settings(sink.port, notification_concurrency=16)
    worker_a, worker_b = make_notifications(settings), make_notifications(settings)
    event_id = await catalog.event(title="Cancelled Gala")
    # 2,000 tickets: 1,350 single-ticket orders (50 of them already refunded), 300 two-ticket
    # orders, and 50 of the pair buyers bought once more with a differently-cased address.
    singles = [f"fan{i}@example.test" for i in range(1350)]
    await catalog.orders(event_id, singles[:1300], tickets_per_order=1)
    await catalog.orders(event_id, singles[1300:], tickets_per_order=1, status="refunded")
    pairs = [f"pair{i}@example.test" for i in range(300)]
    await catalog.orders(event_id, pairs, tickets_per_order=2)
    await catalog.orders(event_id, [a.upper() for a in pairs[:50]], tickets_per_order=1)
    assert await pool.fetchval("SELECT count(*) FROM tickets WHERE event_id = $1", event_id) == 2000
    expected = {a.lower() for a in singles + pairs}
    await pool.execute("UPDATE events SET status = 'cancelled' WHERE id = $1", event_id)

    env = envelope("EventCancelled", str(event_id), {"event_id": str(event_id), "title": "Cancelled Gala"})
    await asyncio.gather(on_event_cancelled(worker_a, env), on_event_cancelled(worker_b, env))
    await on_event_cancelled(worker_a, env)  # a redelivery records nothing new
    assert len(await worker_a.jobs.open_jobs()) == 1

    await _drain_jobs(worker_a, worker_b)
    await sink.handler.wait_for(len(expected), timeout_s=120)
    await asyncio.sleep(0.3)

    received = Counter(r.lower() for r in sink.recipients())
    assert set(received) == expected
    assert max(received.values()) == 1
    assert sink.count == len(expected) == 1650
    sent = await pool.fetchval("SELECT count(*) FROM notifications WHERE event_id = $1::uuid AND status = 'sent'",
                               env.event_id)
    assert sent == 1650
    job = await worker_a.jobs.get(env.event_id)
    assert job is not None and job.completed_at is not None and job.recipients == 1650
    [one] = [m for m in sink.handler.parsed()[:1]]
    assert one["Subject"] == "Cancelled: Cancelled Gala (you will be refunded)"
    assert "refunded in full" in one.get_body(("plain",)).get_content()
    total = sum(metric(w, "notifications_sent_total", kind="event_cancelled", channel="email")
                for w in (worker_a, worker_b))
    assert total == 1650

    await on_event_cancelled(worker_b, env)  # long after: still nothing new
    await _drain_jobs(worker_a)
    assert sink.count == 1650


async def test_event_updates_reach_holders_once_and_only_for_news(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    n = make_notifications(mail_settings(sink.port))
    event_id = await catalog.event(title="Moved Show")
    await catalog.orders(event_id, ["a@example.test", "b@example.test"], tickets_per_order=1)
    await catalog.orders(event_id, ["gone@example.test"], status="refunded")

    quiet = envelope("EventUpdated", str(event_id), {"event_id": str(event_id), "fields": ["hold_ttl_s"]})
    await on_event_updated(n, quiet)
    assert await n.jobs.open_jobs() == []

    news = envelope("EventUpdated", str(event_id), {"event_id": str(event_id), "fields": ["starts_at", "status"]})
    await on_event_updated(n, news)
    await on_event_updated(n, news)
    await _drain_jobs(n)
    await sink.handler.wait_for(2)
    await asyncio.sleep(0.2)
    assert sorted(sink.recipients()) == ["a@example.test", "b@example.test"]
    msg = sink.handler.parsed()[0]
    assert msg["Subject"] == "Changed: Moved Show"
    assert "(starts_at)" in msg.get_body(("plain",)).get_content()
    assert [p.get_filename() for p in msg.iter_attachments()] == ["event.ics"]


async def test_reminders_fire_once_even_when_the_scheduler_runs_twice(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any, pool: Any) -> None:
    settings = mail_settings(sink.port, reminder_lead_time_s=86_400)
    a, b = make_notifications(settings), make_notifications(settings)
    soon = await catalog.event(title="Tomorrow", starts_in=dt.timedelta(hours=20))
    later = await catalog.event(title="Next week", starts_in=dt.timedelta(days=7))
    called_off = await catalog.event(title="Called off", starts_in=dt.timedelta(hours=5), status="cancelled")
    for event_id in (soon, later, called_off):
        await catalog.orders(event_id, [f"x{event_id}@example.test", f"y{event_id}@example.test"])

    recorded = await asyncio.gather(schedule_reminders(a), schedule_reminders(b))
    assert sum(recorded) == 1
    assert await schedule_reminders(a) == 0
    await asyncio.gather(_drain_jobs(a, b), _drain_jobs(b, a))
    assert await schedule_reminders(b) == 0  # the completed job is still known
    await _drain_jobs(a)
    await sink.handler.wait_for(2)
    await asyncio.sleep(0.2)

    assert sorted(sink.recipients()) == [f"x{soon}@example.test", f"y{soon}@example.test"]
    assert all(m["Subject"].startswith("Reminder: Tomorrow starts ") for m in sink.handler.parsed())
    starts = await pool.fetchval("SELECT starts_at FROM events WHERE id = $1", soon)
    job = await a.jobs.get(reminder_job_id(soon, starts))
    assert job is not None and job.completed_at is not None

    # Rescheduled into the window again (a new start time): reminded for the new date.
    await pool.execute("UPDATE events SET starts_at = starts_at + interval '1 hour', "
                       "ends_at = ends_at + interval '1 hour' WHERE id = $1", soon)
    assert await schedule_reminders(a) == 1
    await _drain_jobs(a)
    await sink.handler.wait_for(4)
    assert sink.count == 4
