"""A payment flag (a dispute, or a charge whose amount does not match) e-mails the event's organizer
through a real SMTP server, once per PaymentFlagged envelope, with the payment's facts; a flag without
an order says so."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from tests.support.notifications import envelope, metric
from ticketing.notifications.handlers import on_payment_flagged


async def _flag(pool: asyncpg.Pool, event_id: int, kind: str, order_id: str | None, details: dict[str, Any]) -> int:
    return int(await pool.fetchval(
        "INSERT INTO payment_flags (kind, source_event, gateway, gateway_key, charge_id, order_id, event_id, "
        "details) VALUES ($1, 'evt_1', 'stripe', 'pk:0', 'pi_123', $2::uuid, $3, $4::text::jsonb) RETURNING id",
        kind, order_id, event_id, json.dumps(details)))  # text: the pool encodes jsonb itself


def _flagged(flag_id: int, kind: str, event_id: int, order_id: str | None) -> Any:
    payload: dict[str, Any] = {"flag_id": flag_id, "kind": kind, "event_id": str(event_id)}
    if order_id is not None:
        payload["order_id"] = order_id
    return envelope("PaymentFlagged", str(event_id), payload)


async def test_a_dispute_e_mails_the_organizer_once(sink: Any, mail_settings: Any, make_notifications: Any,
                                                    catalog: Any, pool: asyncpg.Pool) -> None:
    n = make_notifications(mail_settings(sink.port))
    event_id = await catalog.event(title="Night at the Opera")
    [order_id] = await catalog.orders(event_id, ["fan@example.test"])
    organizer = await pool.fetchval("SELECT u.email FROM events e JOIN users u ON u.id = e.organizer_id "
                                    "WHERE e.id = $1", event_id)
    flag_id = await _flag(pool, event_id, "dispute", order_id,
                          {"amount": 4500, "currency": "EUR", "reason": "fraudulent", "status": "needs_response"})
    env = _flagged(flag_id, "dispute", event_id, order_id)
    await on_payment_flagged(n, env)
    await on_payment_flagged(n, env)  # redelivered
    await sink.handler.wait_for(1)
    await asyncio.sleep(0.2)  # a second message, if any, would be on its way by now

    assert sink.recipients() == [organizer]
    [msg] = sink.handler.parsed()
    assert msg["Subject"] == "Payment needs your attention: Night at the Opera"
    assert msg["X-Stagedoor-Kind"] == "payment_flagged"
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "disputed" in body and order_id in body and "pi_123" in body and "fraudulent" in body
    assert "45.00 EUR" in body and "answer the dispute" in body
    assert "fan@example.test" not in body
    assert msg.get_body(("html",)) is not None
    assert metric(n, "notifications_sent_total", kind="payment_flagged", channel="email") == 1


async def test_a_mismatch_without_an_order_says_so(sink: Any, mail_settings: Any, make_notifications: Any,
                                                   catalog: Any, pool: asyncpg.Pool) -> None:
    n = make_notifications(mail_settings(sink.port))
    event_id = await catalog.event(title="Gala")
    flag_id = await _flag(pool, event_id, "amount_mismatch", None,
                          {"amount": 4600, "currency": "EUR", "expected_amount": 4500, "expected_currency": "EUR"})
    await on_payment_flagged(n, _flagged(flag_id, "amount_mismatch", event_id, None))
    await sink.handler.wait_for(1)
    [msg] = sink.handler.parsed()
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "another amount" in body and "no order was confirmed" in body
    assert "46.00 EUR" in body and "45.00 EUR" in body


async def test_a_flag_that_is_not_there_sends_nothing(sink: Any, mail_settings: Any, make_notifications: Any) -> None:
    n = make_notifications(mail_settings(sink.port))
    await on_payment_flagged(n, _flagged(424242, "dispute", 1, None))
    await asyncio.sleep(0.2)
    assert sink.count == 0


async def test_a_missing_refund_tells_the_organizer_what_the_gateway_shows(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any, pool: asyncpg.Pool) -> None:
    n = make_notifications(mail_settings(sink.port))
    event_id = await catalog.event(title="Night at the Opera")
    [order_id] = await catalog.orders(event_id, ["fan@example.test"])
    flag_id = await _flag(pool, event_id, "refund_missing", order_id,
                          {"amount": 4500, "currency": "EUR", "amount_refunded": 0, "status": "succeeded",
                           "expected_amount": 4500, "expected_currency": "EUR"})
    await on_payment_flagged(n, _flagged(flag_id, "refund_missing", event_id, order_id))
    await sink.handler.wait_for(1)
    [msg] = sink.handler.parsed()
    text = msg.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert "A refund stagedoor made does not show at the payment gateway" in body
    assert order_id in body and "pi_123" in body and "45.00 EUR" in body
