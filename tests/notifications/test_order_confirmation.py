"""Order confirmation: a real SMTP server receives text + HTML + one QR image per ticket + a
parsable .ics; a redelivered envelope sends nothing twice; an SMS goes out when a phone is given."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from icalendar import Calendar

from tests.support.notifications import envelope, metric
from ticketing.notifications.handlers import on_order_confirmed
from ticketing.notifications.messages import render_qr_png
from ticketing.notifications.sms import LoggingSmsProvider


async def _order(catalog: Any, tickets: int = 2, email: str = "Ada@Example.test") -> tuple[int, str]:
    event_id = await catalog.event(title="Night at the Opera")
    [order_id] = await catalog.orders(event_id, [email], tickets_per_order=tickets)
    return event_id, order_id


def _confirmed(order_id: str, event_id: int, **extra: Any) -> Any:
    return envelope("OrderConfirmed", order_id, {"order_id": order_id, "event_id": str(event_id), **extra})


async def test_order_confirmation_has_text_html_qr_images_and_a_parsable_ics(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any, pool: Any) -> None:
    n = make_notifications(mail_settings(sink.port))
    event_id, order_id = await _order(catalog, tickets=2)
    await on_order_confirmed(n, _confirmed(order_id, event_id))

    await sink.handler.wait_for(1)
    [msg] = sink.handler.parsed()
    assert sink.recipients() == ["Ada@Example.test"]
    assert msg["Subject"] == "Your tickets for Night at the Opera"
    assert msg["X-Stagedoor-Kind"] == "order_confirmed"
    assert msg.get_content_type() == "multipart/mixed"

    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    codes = [r["code"] for r in await pool.fetch("SELECT code FROM tickets WHERE order_id = $1::uuid", order_id)]
    assert "Night at the Opera" in text.get_content() and order_id in text.get_content()
    assert "Ticket 2 of 2" in text.get_content()
    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    images = [p for p in related.iter_parts() if p.get_content_type() == "image/png"]
    assert len(images) == 2
    html_text = html.get_content()
    for image in images:
        cid = image["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html_text
    # Each image is the QR of one of the order's signed ticket codes.
    assert sorted(i.get_content() for i in images) == sorted(render_qr_png(c) for c in codes)
    assert all(i.get_content().startswith(b"\x89PNG") for i in images)

    [ics] = [p for p in msg.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert ics.get_filename() == "event.ics"
    cal = Calendar.from_ical(ics.get_content() if isinstance(ics.get_content(), bytes)
                             else ics.get_content().encode())
    [vevent] = cal.walk("VEVENT")
    starts = await pool.fetchval("SELECT starts_at FROM events WHERE id = $1", event_id)
    assert str(vevent["SUMMARY"]) == "Night at the Opera"
    assert abs(vevent.decoded("DTSTART") - starts) < dt.timedelta(seconds=1)
    assert str(vevent["UID"]) == f"event-{event_id}@stagedoor"
    assert "Vienna" in str(vevent["LOCATION"])

    assert metric(n, "notifications_sent_total", kind="order_confirmed", channel="email") == 1


async def test_a_redelivered_envelope_sends_nothing_twice(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    settings = mail_settings(sink.port)
    first, second = make_notifications(settings), make_notifications(settings)  # two consumers
    event_id, order_id = await _order(catalog, tickets=1)
    env = _confirmed(order_id, event_id)

    await on_order_confirmed(first, env)
    await on_order_confirmed(first, env)  # redelivered to the same consumer
    await asyncio.gather(on_order_confirmed(first, env), on_order_confirmed(second, env))  # and to two at once
    await sink.handler.wait_for(1)
    await asyncio.sleep(0.2)  # a second message, if any, would be on its way by now

    assert sink.count == 1
    row = await first.sent_log.status(env.event_id, "ada@example.test", "order_confirmed")
    assert row is not None and row.status == "sent" and row.attempts == 1
    skipped = (metric(first, "notifications_skipped_total", kind="order_confirmed", channel="email",
                      reason="already_sent")
               + metric(second, "notifications_skipped_total", kind="order_confirmed", channel="email",
                        reason="already_sent"))
    assert skipped == 3


async def test_two_consumers_racing_over_one_envelope_claim_it_once(
        start_smtp: Any, mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    """While one consumer is still sending, the other neither sends nor acknowledges: it raises,
    so the bus retries it later (and then finds the row sent)."""
    from tests.support.notifications import FlakySink
    from ticketing.notifications.errors import NotificationsIncomplete

    gate = asyncio.Event()

    class SlowSink(FlakySink):
        async def handle_DATA(self, server: Any, session: Any, env: Any) -> str:
            await gate.wait()
            return await super().handle_DATA(server, session, env)

    sink = await start_smtp(SlowSink())
    settings = mail_settings(sink.port)
    a, b = make_notifications(settings), make_notifications(settings)
    event_id, order_id = await _order(catalog, tickets=1)
    env = _confirmed(order_id, event_id)

    slow = asyncio.create_task(on_order_confirmed(a, env))
    for _ in range(200):  # until a's claim is in
        if await a.sent_log.status(env.event_id, "ada@example.test", "order_confirmed"):
            break
        await asyncio.sleep(0.02)
    with pytest.raises(NotificationsIncomplete):
        await on_order_confirmed(b, env)
    gate.set()
    await slow
    await on_order_confirmed(b, env)  # the retry: already sent, acknowledged
    assert sink.count == 1


async def test_order_confirmation_sms_when_the_event_carries_a_phone(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    sms = LoggingSmsProvider()
    n = make_notifications(mail_settings(sink.port), sms=sms)
    event_id, order_id = await _order(catalog, tickets=3)
    env = _confirmed(order_id, event_id, phone="+4915112345678")
    await on_order_confirmed(n, env)
    await on_order_confirmed(n, env)
    assert len(sms.sent) == 1
    assert sms.sent[0].to == "+4915112345678"
    assert "3 ticket(s) for Night at the Opera" in sms.sent[0].text
    assert sms.sent[0].idempotency_key == f"{env.event_id}:order_confirmed:+4915112345678"
    assert sink.count == 1

    bad = _confirmed(order_id, event_id, phone="0151 not a number")
    await on_order_confirmed(n, bad)  # an invalid number is ignored, the e-mail still goes
    assert len(sms.sent) == 1
    await sink.handler.wait_for(2)
