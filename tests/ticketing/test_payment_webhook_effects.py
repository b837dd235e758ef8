"""The worker applying Stripe webhooks to real purchases (shop, worker and a gateway double over HTTP,
tests/support/payments.py; webhooks signed as Stripe signs them, tests/support/stripe_webhooks.py):

- a success for an unanswered charge is recorded on its attempt and the reconciler completes the order
  after the payment window; for a committed order it changes nothing;
- a failure fails an unsettled attempt; a success heard before it (events come in any order) makes a late
  failure change nothing, and a success heard after it reopens the attempt for the reconciler;
- an amount or currency other than the purchase's is flagged and never confirmed: the charge is refunded;
- a refund made in Stripe's dashboard refunds the order (in full) or records the part returned; a refund
  stagedoor owed is confirmed;
- a dispute flags the order and announces it for the organizer's e-mail;
- a redelivered webhook has no second effect."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import asyncpg
import pytest

from stagedoor.bus import envelope_of_row
from stagedoor.dev_mail import MailSink, sink_port, start_sink
from stagedoor.web import DB
from tests.support.events import buy, hold_seats
from tests.support.payments import PaymentStack, age_payments
from tests.support.stripe_webhooks import (
    WEBHOOK_SECRET,
    charge,
    dispute,
    effects_applied,
    payment_intent,
    post_webhook,
    stripe_event,
    wait_applied,
)
from ticketing.appkeys import METRICS, RECONCILER
from ticketing.consumers import CONSUMER_FACTORIES


@pytest.fixture
def stack(payment_stack: Any) -> Any:
    return functools.partial(payment_stack, stripe_webhook_secret=WEBHOOK_SECRET, outbox_relay_interval_ms=20)


class Sale:
    """One purchase through the shop, and what the gateway double made of it."""

    def __init__(self, s: PaymentStack, fan: Any, hold_id: str, status: int) -> None:
        self.s, self.fan, self.hold_id, self.status = s, fan, hold_id, status
        [(self.gateway_key, made)] = list(s.double.charges.items())
        self.charge_id: str = made["id"]
        self.amount: int = made["amount"]

    @property
    def db(self) -> asyncpg.Pool:
        return self.s.shop.app[DB]


async def _sale(s: PaymentStack, make_event: Any, create_user: Any, *, answered: bool) -> Sale:
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    if not answered:
        s.double.hang_after_charge = 1  # charged, but the shop never hears it
    resp = await buy(s.shop, fan, hold["hold_id"], key="k")
    assert resp.status == (201 if answered else 502), await resp.text()
    return Sale(s, fan, hold["hold_id"], resp.status)


async def _send(s: PaymentStack, body: bytes) -> bool:
    """Post the webhook; once stored, until the worker applied it. Whether it was stored (not a redelivery)."""
    before = effects_applied(s.worker)
    resp = await post_webhook(s.shop, body)
    assert resp.status == 200, await resp.text()
    stored: bool = (await resp.json())["stored"]
    if stored:
        await wait_applied(s.worker, int(before) + 1)
    return stored


def _succeeded(sale: Sale, amount: int | None = None, currency: str = "eur", event_id: str | None = None) -> bytes:
    return stripe_event("payment_intent.succeeded",
                        payment_intent(sale.charge_id, amount or sale.amount, gateway_key=sale.gateway_key,
                                       currency=currency), event_id=event_id)


def _failed(sale: Sale, event_id: str | None = None) -> bytes:
    return stripe_event("payment_intent.payment_failed",
                        payment_intent(sale.charge_id, sale.amount, gateway_key=sale.gateway_key,
                                       status="requires_payment_method", decline_code="insufficient_funds"),
                        event_id=event_id)


async def _apply_stored_again(s: PaymentStack) -> None:
    """Every stored webhook handed to the worker's payment_webhooks handler once more (the bus delivers at
    least once)."""
    handler = CONSUMER_FACTORIES["payment_webhooks"](s.worker.app)
    rows = await s.shop.app[DB].fetch("SELECT id, event_id, event_type, event_version, aggregate_id, payload, "
                                      "created_at FROM outbox WHERE event_type = 'PaymentWebhookReceived'")
    for row in rows:
        await handler(envelope_of_row(row))


def _effects(s: PaymentStack, type_: str, outcome: str) -> float:
    return s.worker.app[METRICS].registry.get_sample_value(
        "ticketing_payment_webhook_effects_total", {"type": type_, "outcome": outcome}) or 0.0


async def _attempt(db: asyncpg.Pool) -> dict[str, Any]:
    row = await db.fetchrow("SELECT state, charge_id, charged_at, reason FROM charge_attempts")
    assert row is not None
    return dict(row)


async def _count(db: asyncpg.Pool, sql: str) -> int:
    return int(await db.fetchval(sql))


async def _flags(db: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT kind, order_id::text AS order_id, gateway_key, charge_id, details FROM payment_flags "
                          "ORDER BY id")
    return [dict(r) for r in rows]


# ---------------------------------------------------------------- payment_intent.succeeded

async def test_a_success_for_an_unanswered_charge_is_recorded_and_the_reconciler_completes_it_after_the_window(
        stack: Any, make_event: Any, create_user: Any) -> None:
    s = await stack()
    sale = await _sale(s, make_event, create_user, answered=False)
    body = _succeeded(sale)
    await _send(s, body)
    attempt = await _attempt(sale.db)
    assert (attempt["state"], attempt["charge_id"]) == ("unknown", sale.charge_id)
    assert attempt["charged_at"] is not None
    assert await _count(sale.db, "SELECT count(*) FROM orders") == 0  # recorded only: the window has not passed
    assert not await _send(s, body)  # redelivered: not stored again, nothing applied again
    assert await _count(sale.db, "SELECT count(*) FROM outbox WHERE event_type = 'PaymentWebhookReceived'") == 1
    await age_payments(sale.db, s.settings.payment_window_s + 1)
    assert (await s.worker.app[RECONCILER].run_once()).completed == 1
    assert await _count(sale.db, "SELECT count(*) FROM orders") == 1
    assert s.double.net_charges == 1 and not s.double.refunds


@pytest.mark.parametrize("amount_received", [True, False], ids=["stripe", "no-amount-received"])
async def test_a_success_for_a_committed_order_changes_nothing(stack: Any, make_event: Any, create_user: Any,
                                                               amount_received: bool) -> None:
    """Also from a Stripe-compatible server that leaves ``amount_received`` out (localstripe does): the
    intent's amount is what a succeeded intent took, never 0 (which would be flagged as a mismatch)."""
    s = await stack()
    sale = await _sale(s, make_event, create_user, answered=True)
    before = await sale.db.fetch("SELECT * FROM payments")
    body = _succeeded(sale)
    if not amount_received:
        event = json.loads(body)
        del event["data"]["object"]["amount_received"]
        body = json.dumps(event).encode()
    await _send(s, body)
    assert await sale.db.fetch("SELECT * FROM payments") == before
    assert await _count(sale.db, "SELECT count(*) FROM charge_attempts") == 0
    assert await _flags(sale.db) == []


@pytest.mark.parametrize(("amount_delta", "currency"), [(1, "eur"), (0, "usd")])
async def test_an_amount_or_currency_mismatch_is_flagged_and_never_confirmed(
        stack: Any, make_event: Any, create_user: Any, amount_delta: int, currency: str) -> None:
    s = await stack()
    sale = await _sale(s, make_event, create_user, answered=False)
    await _send(s, _succeeded(sale, amount=sale.amount + amount_delta, currency=currency))
    [flag] = await _flags(sale.db)
    assert (flag["kind"], flag["order_id"], flag["gateway_key"], flag["charge_id"]) == \
        ("amount_mismatch", None, sale.gateway_key, sale.charge_id)
    assert (flag["details"]["amount"], flag["details"]["expected_amount"]) == (sale.amount + amount_delta, sale.amount)
    assert await _count(sale.db, "SELECT count(*) FROM outbox WHERE event_type = 'PaymentFlagged'") == 1
    # the charge is claimed for a refund: no commit can take it any more, and the reconciler pays it back
    assert await sale.db.fetchval("SELECT status FROM payments WHERE gateway_key = $1", sale.gateway_key) == \
        "refunding"
    await age_payments(sale.db, s.settings.payment_window_s + 1)
    await sale.db.execute("UPDATE payments SET next_attempt_at = now()")
    run = await s.worker.app[RECONCILER].run_once()
    assert run.completed == 0 and run.refunded == 1, run
    assert await _count(sale.db, "SELECT count(*) FROM orders") == 0
    assert sale.charge_id in s.double.refunds
    # the fan's retry with the same Idempotency-Key pays with a new charge of the right amount
    retry = await buy(s.shop, sale.fan, sale.hold_id, key="k")
    assert retry.status == 201, await retry.text()
    assert await sale.db.fetchval("SELECT charge_id FROM payments WHERE order_id IS NOT NULL") != sale.charge_id
    assert s.double.net_charges == 1


async def test_a_mismatch_on_a_committed_order_flags_it_and_leaves_it_confirmed(stack: Any, make_event: Any,
                                                                                 create_user: Any) -> None:
    s = await stack()
    sale = await _sale(s, make_event, create_user, answered=True)
    await _send(s, _succeeded(sale, amount=sale.amount - 100))
    order_id = await sale.db.fetchval("SELECT id::text FROM orders")
    [flag] = await _flags(sale.db)
    assert (flag["kind"], flag["order_id"]) == ("amount_mismatch", order_id)
    assert await sale.db.fetchval("SELECT status FROM payments") == "succeeded"


# ---------------------------------------------------------------- payment_intent.payment_failed

async def test_a_failure_fails_an_unsettled_attempt_and_a_success_heard_later_reopens_it(
        stack: Any, make_event: Any, create_user: Any) -> None:
    s = await stack()
    sale = await _sale(s, make_event, create_user, answered=False)
    await _send(s, _failed(sale))
    attempt = await _attempt(sale.db)
    assert (attempt["state"], attempt["reason"]) == ("failed", "gateway:insufficient_funds")
    await _send(s, _succeeded(sale))  # charged after all (Stripe's events come in any order)
    attempt = await _attempt(sale.db)
    assert (attempt["state"], attempt["charge_id"], attempt["reason"]) == \
        ("unknown", sale.charge_id, "charged_after_failure")
    await age_payments(sale.db, s.settings.payment_window_s + 1)
    assert (await s.worker.app[RECONCILER].run_once()).completed == 1  # the fan gets the seat they paid for


async def test_a_failure_delivered_after_the_success_changes_nothing(stack: Any, make_event: Any,
                                                                     create_user: Any) -> None:
    s = await stack()
    sale = await _sale(s, make_event, create_user, answered=False)
    await _send(s, _succeeded(sale))
    await _send(s, _failed(sale))
    attempt = await _attempt(sale.db)
    assert (attempt["state"], attempt["charge_id"]) == ("unknown", sale.charge_id)
    assert _effects(s, "payment_intent.payment_failed", "ignored") == 1


# ---------------------------------------------------------------- charge.refunded

async def test_a_refund_in_the_dashboard_records_a_part_then_refunds_the_order_once(
        stack: Any, make_event: Any, create_user: Any) -> None:
    s = await stack()
    sale = await _sale(s, make_event, create_user, answered=True)
    await _send(s, stripe_event("charge.refunded", charge(sale.charge_id, sale.amount, amount_refunded=1000)))
    row = await sale.db.fetchrow("SELECT p.status, p.amount_refunded, o.status AS order_status "
                                 "FROM payments p JOIN orders o ON o.id = p.order_id")
    assert row is not None and tuple(row) == ("succeeded", 1000, "confirmed")
    full = stripe_event("charge.refunded", charge(sale.charge_id, sale.amount, amount_refunded=sale.amount))
    assert await _send(s, full)
    assert not await _send(s, full)  # redelivered
    await _apply_stored_again(s)  # and each stored webhook delivered to the group once more
    row = await sale.db.fetchrow("SELECT p.status, p.amount_refunded, o.status AS order_status "
                                 "FROM payments p JOIN orders o ON o.id = p.order_id")
    assert row is not None and tuple(row) == ("refunded", sale.amount, "refunded")
    [refunded] = await sale.db.fetch("SELECT payload FROM outbox WHERE event_type = 'OrderRefunded'")
    assert (refunded["payload"]["amount"], refunded["payload"]["reason"]) == (sale.amount, "refunded_at_gateway")


async def test_a_refund_stagedoor_owed_is_confirmed_by_the_webhook(stack: Any, make_event: Any,
                                                                   create_user: Any) -> None:
    s = await stack()
    sale = await _sale(s, make_event, create_user, answered=False)
    await _send(s, _succeeded(sale, amount=sale.amount + 1))  # claimed for a refund (mismatch)
    await _send(s, stripe_event("charge.refunded", charge(sale.charge_id, sale.amount + 1,
                                                          amount_refunded=sale.amount + 1)))
    row = await sale.db.fetchrow("SELECT status, refund_id FROM payments WHERE gateway_key = $1", sale.gateway_key)
    assert row is not None and row["status"] == "refunded" and row["refund_id"].startswith("re_")
    assert await _count(sale.db, "SELECT count(*) FROM outbox WHERE event_type = 'OrderRefunded'") == 0


# ---------------------------------------------------------------- charge.dispute.created

async def test_a_dispute_flags_the_order_once_and_announces_it_for_the_organizer(stack: Any, make_event: Any,
                                                                               create_user: Any) -> None:
    s = await stack()
    sale = await _sale(s, make_event, create_user, answered=True)
    body = stripe_event("charge.dispute.created", dispute(sale.charge_id, sale.amount))
    assert await _send(s, body)
    assert not await _send(s, body)
    await _apply_stored_again(s)
    order_id, event_id = await sale.db.fetchrow("SELECT id::text, event_id FROM orders")
    [flag] = await _flags(sale.db)
    assert (flag["kind"], flag["order_id"], flag["details"]["reason"]) == ("dispute", order_id, "fraudulent")
    [announced] = await sale.db.fetch("SELECT payload FROM outbox WHERE event_type = 'PaymentFlagged'")
    assert announced["payload"]["kind"] == "dispute" and announced["payload"]["order_id"] == order_id
    assert announced["payload"]["event_id"] == str(event_id)
    assert await sale.db.fetchval("SELECT status FROM orders") == "confirmed"  # the organizer decides
    assert _effects(s, "charge.dispute.created", "flagged") == 2  # applied twice, flagged once
    assert s.worker.app[METRICS].registry.get_sample_value("ticketing_payment_flags_total", {"kind": "dispute"}) == 1


async def test_a_webhook_for_a_charge_stagedoor_never_made_changes_nothing(stack: Any) -> None:
    s = await stack()
    body = stripe_event("charge.dispute.created", dispute("pi_elsewhere", 999))
    await _send(s, body)
    db = s.shop.app[DB]
    assert await _flags(db) == []
    assert await _count(db, "SELECT count(*) FROM outbox WHERE event_type <> 'PaymentWebhookReceived'") == 0


async def test_a_dispute_reaches_the_organizer_by_e_mail_through_the_worker(stack: Any, make_event: Any,
                                                                           create_user: Any) -> None:
    mail = MailSink()
    server = await start_sink(mail, "127.0.0.1", 0)
    try:
        s = await stack(smtp_host="127.0.0.1", smtp_port=sink_port(server), smtp_starttls=False,
                        smtp_timeout_s=5.0)
        sale = await _sale(s, make_event, create_user, answered=True)
        assert await _send(s, stripe_event("charge.dispute.created", dispute(sale.charge_id, sale.amount)))
        organizer = await sale.db.fetchval("SELECT u.email FROM orders o JOIN events e ON e.id = o.event_id "
                                           "JOIN users u ON u.id = e.organizer_id")
        deadline = 15.0
        while deadline > 0 and not any(m["X-Stagedoor-Kind"] == "payment_flagged" for m in mail.parsed()):
            await asyncio.sleep(0.1)
            deadline -= 0.1
        [flagged] = [m for m in mail.parsed() if m["X-Stagedoor-Kind"] == "payment_flagged"]
        assert flagged["To"] == organizer
    finally:
        server.close()
        await server.wait_closed()
