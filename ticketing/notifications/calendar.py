"""The ``.ics`` attached to order confirmations and event updates (RFC 5545, via icalendar).

The UID is stable per catalog event, so an update's file (higher SEQUENCE) replaces the
calendar entry the confirmation created instead of adding a second one.
"""

from __future__ import annotations

import datetime as dt

from icalendar import Calendar, Event

from ticketing.notifications.recipients import EventInfo

PRODID = "-//stagedoor//tickets//EN"


def event_uid(event_id: int) -> str:
    return f"event-{event_id}@stagedoor"


def event_ics(event: EventInfo, *, url: str, sequence: int = 0, now: dt.datetime | None = None) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    vevent = Event()
    vevent.add("uid", event_uid(event.id))
    vevent.add("dtstamp", now or dt.datetime.now(dt.UTC))
    vevent.add("dtstart", event.starts_at.astimezone(dt.UTC))
    vevent.add("dtend", event.ends_at.astimezone(dt.UTC))
    vevent.add("summary", event.title)
    vevent.add("location", event.location)
    vevent.add("description", f"{event.category}. Tickets: {url}")
    vevent.add("url", url)
    vevent.add("sequence", sequence)
    vevent.add("status", "CANCELLED" if event.status == "cancelled" else "CONFIRMED")
    cal.add_component(vevent)
    ical: bytes = cal.to_ical()
    return ical
