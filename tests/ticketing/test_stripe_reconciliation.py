"""Reconciliation with Stripe against a real local server (localstripe, tests/support/localstripe.py):
the adapter's cancel and payment listing, the reconciler cancelling an abandoned 3-D Secure intent
(the fan's authentication afterwards cannot take money), the gateway sweep refunding a charge made
under one of our keys that we never recorded and recording a refund made in the account, and
refunds of a cancelled event going to the gateway that took each charge after a switch of gateway."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
import uuid
from typing import Any

import pytest

from stagedoor.clock import ManualClock
from stagedoor.dev_stripe import local_keys
from stagedoor.web import DB
from tests.support.events import buy, hold_seats
from tests.support.localstripe import CARD_3DS, CARD_OK, StripeAccount
from ticketing.appkeys import CLOCK, GATEWAY, ORDERS, PURCHASES, RECONCILER
from ticketing.metrics import TicketingMetrics
from ticketing.orders.refunds import refund_event_orders
from ticketing.payments.charging import Payments
from ticketing.payments.gateway import AlreadyCharged, ChargeDeclined, ChargeRequiresAction, MockGateway
from ticketing.payments.records import NewPayment, PaymentRecords
from ticketing.payments.stripe_gateway import StripeGateway
from ticketing.payments.sweep import GatewaySweep
from ticketing.payments.sweep_store import SweepStore
from ticketing.payments.webhook_store import WebhookStore
from ticketing.worker import create_worker_app


def our_key() -> str:
    """A gateway key shaped as the purchase makes them (<purchase_key>:<seq>), fresh."""
    return secrets.token_hex(20) + ":0"


async def _next_second() -> int:
    """Wait for the next whole second of the wall clock and return it: what the local server makes
    from now on is created at or after it, what other tests made before it is not."""
    start = math.floor(time.time()) + 1
    await asyncio.sleep(max(0.0, start - time.time()) + 0.01)
    return start


async def _3ds_intent(stripe_gateway: StripeGateway, stripe_account: StripeAccount, key: str) -> tuple[str, str]:
    card = await stripe_account.payment_method(CARD_3DS)
    with pytest.raises(ChargeRequiresAction) as asked:
        await stripe_gateway.charge(amount=4200, currency="eur", token=card, idempotency_key=key)
    return asked.value.intent_id, asked.value.client_secret


async def test_cancel_stops_an_intent_waiting_for_the_fan_and_reports_one_that_succeeded(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    key = our_key()
    intent_id, secret = await _3ds_intent(stripe_gateway, stripe_account, key)
    await stripe_gateway.cancel(intent_id)
    assert (await stripe_account.intent(intent_id))["status"] == "canceled"
    await stripe_gateway.cancel(intent_id)  # again: nothing more to do
    # the fan comes back from the bank's page: refused, and the purchase's charge is a decline
    assert await stripe_account.authenticate(intent_id, secret) == 400
    with pytest.raises(ChargeDeclined):
        await stripe_gateway.charge(amount=4200, currency="eur", token="pm_x", idempotency_key=key,
                                    intent_id=intent_id)
    assert await stripe_gateway.lookup(key) is None

    other_key = our_key()
    done, done_secret = await _3ds_intent(stripe_gateway, stripe_account, other_key)
    assert await stripe_account.authenticate(done, done_secret) == 200
    with pytest.raises(AlreadyCharged) as charged:
        await stripe_gateway.cancel(done)
    assert (charged.value.charge.id, charged.value.charge.amount) == (done, 4200)
    assert (await stripe_account.intent(done))["status"] == "succeeded"


async def test_payments_are_listed_by_creation_time_with_what_was_refunded(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    start = await _next_second()
    key = our_key()
    card = await stripe_account.payment_method(CARD_OK)
    charge = await stripe_gateway.charge(amount=3000, currency="eur", token=card, idempotency_key=key)
    await stripe_gateway.refund(charge, idempotency_key="r1", amount=1000)
    waiting, _ = await _3ds_intent(stripe_gateway, stripe_account, our_key())
    listed: dict[str, Any] = {}
    after = None
    while True:  # localstripe takes no created filter: the adapter lists it all and keeps the range
        page = await stripe_gateway.list_payments(created_from=start, created_to=int(time.time()) + 1, after=after)
        listed.update({p.id: p for p in page.payments})
        if page.next is None:
            break
        after = page.next
    assert set(listed) == {charge.id, waiting}
    got = listed[charge.id]
    assert (got.status, got.amount, got.currency, got.amount_refunded, got.gateway_key) == \
        ("succeeded", 3000, "eur", 1000, key)
    assert got.created >= start and listed[waiting].status == "requires_action"


async def test_the_reconciler_cancels_an_abandoned_3d_secure_intent_at_stripe(
        aiohttp_client: Any, make_settings: Any, keyring: Any, manual_clock: ManualClock,
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    settings = make_settings(payment_gateway="stripe", stripe_api_key=stripe_account.api_key,
                             stripe_api_base=stripe_account.url, payment_reconcile_interval_s=3600,
                             payment_sweep_interval_s=3600)
    app = create_worker_app(settings, keyring)
    app[GATEWAY] = stripe_gateway
    app[CLOCK] = manual_clock
    worker = await aiohttp_client(app)
    db = worker.app[DB]
    records = PaymentRecords(db)
    opened = await records.open(NewPayment(
        purchase_key=secrets.token_hex(20), user_id=str(uuid.uuid4()), gateway="stripe", hold_id="h-abandoned",
        event_id=1, idempotency_key="k", fingerprint="f", email="fan@example.test", subtotal=4200, discount=0,
        discount_code_id=None, amount=4200, currency="EUR"))
    assert opened is not None
    intent_id, secret = await _3ds_intent(stripe_gateway, stripe_account, opened.gateway_key)
    assert await records.mark_unknown(opened.gateway_key, "requires_action", intent_id)  # as the 202 leaves it
    await db.execute("UPDATE charge_attempts SET updated_at = now() - interval '1 hour'")

    run = await worker.app[RECONCILER].run_once()
    assert (run.cancelled, run.failed, run.completed, run.kept) == (1, 0, 0, 0), run
    assert (await stripe_account.intent(intent_id))["status"] == "canceled"
    assert await db.fetchval("SELECT state || '/' || reason FROM charge_attempts") == "failed/cancelled"
    assert await stripe_account.authenticate(intent_id, secret) == 400  # too late: no money can move


async def _sweep(pool: Any, gateway: StripeGateway, make_settings: Any, start: int) -> GatewaySweep:
    """A gateway sweep of the local server whose first window starts at ``start`` (and, its clock a
    second ahead, ends after what the test made this very second)."""
    settings = make_settings(payment_sweep_settle_s=0, payment_sweep_overlap_s=0)
    payments = Payments(gateway, TicketingMetrics("worker"), attempts=1, gateway_name="stripe")
    store = SweepStore(pool)
    token = uuid.uuid4()
    assert await store.lease("stripe", token, start, 60) is not None
    await store.release("stripe", token)
    return GatewaySweep(payments, store, WebhookStore(pool), payments.metrics, settings, wall=lambda: time.time() + 1)


async def test_the_sweep_refunds_a_charge_under_our_key_we_never_recorded_at_stripe(
        db: Any, make_settings: Any, stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    start = await _next_second()
    card = await stripe_account.payment_method(CARD_OK)
    ours = await stripe_account.create_intent(2500, card, {"gateway_key": our_key()})
    theirs = await stripe_account.create_intent(700, card, {"order": "another-shop-1"})
    assert ours["status"] == theirs["status"] == "succeeded"
    sweep = await _sweep(db, stripe_gateway, make_settings, start)
    run = await sweep.run_once()
    assert run.window_done and run.findings == {"unrecorded": 1}, run
    [refund] = await stripe_account.refunds(ours["id"])
    assert refund["amount"] == 2500 and refund["metadata"] == {"refund_key": "refund:" + ours["id"]}
    assert await stripe_account.refunds(theirs["id"]) == []
    assert sweep.metrics.registry.get_sample_value("ticketing_payments_unrecorded_total",
                                                   {"outcome": "refunded"}) == 1


async def test_the_sweep_records_a_refund_made_in_the_stripe_account(
        shop: Any, make_event: Any, create_user: Any, make_settings: Any, stripe_gateway: StripeGateway,
        stripe_account: StripeAccount) -> None:
    client = await shop(gateway=stripe_gateway, payment_gateway="stripe", stripe_api_key=stripe_account.api_key,
                        stripe_api_base=stripe_account.url, payment_retry_attempts=1)
    start = await _next_second()
    event = await make_event(client)
    fans = [await create_user(), await create_user()]
    orders = []
    for fan, seat in zip(fans, ["s1", "s2"], strict=True):
        hold = await hold_seats(client, fan, event["id"], [seat])
        resp = await buy(client, fan, hold["hold_id"], token=await stripe_account.payment_method(CARD_OK))
        assert resp.status == 201, await resp.text()
        orders.append(await resp.json())
    db = client.app[DB]
    charge_of = {r["order_id"]: r["charge_id"] for r in await db.fetch(
        "SELECT order_id::text, charge_id FROM payments")}
    whole, part = (charge_of[o["order_id"]] for o in orders)
    await stripe_account.refund_outside(whole)
    await stripe_account.refund_outside(part, 500)

    run = await (await _sweep(db, stripe_gateway, make_settings, start)).run_once()
    assert run.findings == {"refunded_outside": 1, "partially_refunded_outside": 1}, run
    status = {r["order_id"]: r["status"] for r in await db.fetch("SELECT id::text AS order_id, status FROM orders")}
    assert status == {orders[0]["order_id"]: "refunded", orders[1]["order_id"]: "confirmed"}
    assert await db.fetchval("SELECT amount_refunded FROM payments WHERE charge_id = $1", part) == 500
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'OrderRefunded'") == 1
    assert len(await stripe_account.refunds(whole)) == 1  # stagedoor refunded nothing itself


async def test_a_cancelled_events_stripe_charges_go_back_to_stripe_after_the_deployment_switched_to_the_mock(
        shop: Any, make_event: Any, create_user: Any, make_settings: Any, stripe_gateway: StripeGateway,
        stripe_account: StripeAccount) -> None:
    client = await shop(gateway=stripe_gateway, payment_gateway="stripe", stripe_api_key=stripe_account.api_key,
                        stripe_api_base=stripe_account.url, payment_retry_attempts=1)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    resp = await buy(client, fan, hold["hold_id"], token=await stripe_account.payment_method(CARD_OK))
    assert resp.status == 201, await resp.text()
    [row] = await client.app[ORDERS].confirmed_orders(int(event["id"]), 10, [])
    assert row.gateway == "stripe"
    organizer = event["_organizer"]
    assert (await client.delete(f"/api/events/{event['id']}", headers=organizer.headers)).status in (200, 204)

    # now on the mock, and Stripe's key gone: the charge is not sent to the mock; it waits, counted
    gone = Payments.from_settings(make_settings(payment_gateway="mock"), TicketingMetrics("worker"), MockGateway())
    run = await refund_event_orders(client.app[ORDERS], gone, int(event["id"]))
    assert (run.refunded, run.failed) == (0, 1)
    assert gone.metrics.registry.get_sample_value("ticketing_payment_gateway_missing_total",
                                                  {"gateway": "stripe"}) == 1
    assert await stripe_account.refunds(row.charge_id) == []
    assert await client.app[DB].fetchval("SELECT status FROM orders") == "confirmed"

    # on the mock with Stripe's key still set: refunded at Stripe, where the money was taken
    api_key, _, _ = local_keys()
    switched = Payments.from_settings(make_settings(payment_gateway="mock", stripe_api_key=api_key,
                                                    stripe_api_base=stripe_account.url),
                                      TicketingMetrics("worker"), MockGateway())
    try:
        run = await refund_event_orders(client.app[ORDERS], switched, int(event["id"]))
    finally:
        await switched.aclose()
    assert (run.refunded, run.failed) == (1, 0)
    [refund] = await stripe_account.refunds(row.charge_id)
    assert refund["amount"] == row.amount
    assert await client.app[DB].fetchval("SELECT status FROM orders") == "refunded"
    assert client.app[PURCHASES].payments.gateway is stripe_gateway
