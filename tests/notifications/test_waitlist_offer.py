"""The e-mail of a waiting-list offer (WaitlistOfferMade): to the fan it is for, once, with the
link to their offers page and the claim deadline; nothing for an offer no longer pending."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg

from tests.support.notifications import envelope, metric
from ticketing.notifications.handlers import on_waitlist_offer


async def _offer(pool: asyncpg.Pool, event_id: int, user_id: str, status: str = "pending") -> str:
    entry = await pool.fetchval("INSERT INTO waitlist_entries (event_id, user_id, quantity, status) "
                                "VALUES ($1, $2::uuid, 2, 'offered') RETURNING id", event_id, user_id)
    offer_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO waitlist_offers (id, event_id, entry_id, user_id, hold_id, quantity, status, expires_at) "
        "VALUES ($1::uuid, $2, $3, $4::uuid, $5, 2, $6, $7)", offer_id, event_id, entry, user_id,
        f"{event_id}-{uuid.uuid4().hex[:24]}", status, dt.datetime(2030, 5, 1, 18, 15, tzinfo=dt.UTC))
    return offer_id


async def test_an_offer_e_mails_the_fan_once_with_the_link_and_deadline(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any, pool: asyncpg.Pool) -> None:
    n = make_notifications(mail_settings(sink.port))
    event_id = await catalog.event(title="Night at the Opera")
    fan = await catalog.user(email="waiting@example.test")
    offer_id = await _offer(pool, event_id, fan)
    env = envelope("WaitlistOfferMade", offer_id, {"offer_id": offer_id, "event_id": str(event_id), "user_id": fan,
                                                   "quantity": 2, "expires_ms": 0})
    await on_waitlist_offer(n, env)
    await on_waitlist_offer(n, env)  # redelivered
    await sink.handler.wait_for(1)
    await asyncio.sleep(0.2)  # a second message, if any, would be on its way by now

    assert sink.recipients() == ["waiting@example.test"]
    [msg] = sink.handler.parsed()
    assert msg["Subject"] == "Tickets for you: Night at the Opera"
    assert msg["X-Stagedoor-Kind"] == "waitlist_offer"
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "2 ticket(s)" in body and "/me/offers" in body and "Wed 01 May 2030, 18:15 UTC" in body
    assert msg.get_body(("html",)) is not None
    assert metric(n, "notifications_sent_total", kind="waitlist_offer", channel="email") == 1


async def test_an_offer_no_longer_pending_sends_nothing(sink: Any, mail_settings: Any, make_notifications: Any,
                                                       catalog: Any, pool: asyncpg.Pool) -> None:
    n = make_notifications(mail_settings(sink.port))
    event_id = await catalog.event()
    fan = await catalog.user(email="late@example.test")
    offer_id = await _offer(pool, event_id, fan, status="expired")
    await on_waitlist_offer(n, envelope("WaitlistOfferMade", offer_id, {"offer_id": offer_id}))  # nothing queued
    assert sink.recipients() == []
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 0
