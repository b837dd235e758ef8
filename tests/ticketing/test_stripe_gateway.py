"""The Stripe adapter (ticketing/payments/stripe_gateway.py) against a real Stripe-compatible server,
localstripe (tests/support/localstripe.py): PaymentIntents created and confirmed, 3-D Secure asked,
completed and failed, declines, full and partial refunds, lookup by our key, an unreachable
Stripe opening the breaker, and many charges in flight on one event loop."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest

from stagedoor.embedded import free_port
from tests.support.events import buy, hold_seats
from tests.support.localstripe import (
    CARD_3DS,
    CARD_3DS_THEN_DECLINED,
    CARD_DECLINED,
    CARD_GENERIC_DECLINE,
    CARD_OK,
    StripeAccount,
    StripeFront,
)
from ticketing.appkeys import ORDERS, PURCHASES
from ticketing.metrics import TicketingMetrics
from ticketing.orders.refunds import refund_event_orders
from ticketing.payments.charging import Payments
from ticketing.payments.errors import PaymentGatewayError, PaymentGatewayUnavailable
from ticketing.payments.gateway import Charge, ChargeDeclined, ChargeRequiresAction, GatewayFailure, RefundRefused
from ticketing.payments.stripe_gateway import StripeGateway


def new_key() -> str:
    return "pay:" + secrets.token_hex(12)


async def test_a_card_payment_is_one_confirmed_payment_intent_carrying_our_key_and_the_purchase(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    key = new_key()
    card = await stripe_account.payment_method(CARD_OK)
    charge = await stripe_gateway.charge(amount=1234, currency="EUR", token=card, idempotency_key=key,
                                         metadata={"hold_id": "h-1", "event_id": "7", "order_id": "o-9"})
    assert charge.id.startswith("pi_") and charge.amount == 1234 and charge.currency == "eur"
    intent = await stripe_account.intent(charge.id)
    assert intent["status"] == "succeeded" and intent["amount"] == 1234 and intent["payment_method"] == card
    assert intent["metadata"] == {"gateway_key": key, "hold_id": "h-1", "event_id": "7", "order_id": "o-9"}
    assert intent["capture_method"] == "automatic_async" and intent["latest_charge"]["captured"] is True
    assert [i["id"] for i in await stripe_account.intents_with_key(key)] == [charge.id]


async def test_3d_secure_asks_for_action_then_the_charge_with_the_intent_succeeds_once_authenticated(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    key = new_key()
    card = await stripe_account.payment_method(CARD_3DS)
    with pytest.raises(ChargeRequiresAction) as asked:
        await stripe_gateway.charge(amount=5000, currency="eur", token=card, idempotency_key=key)
    intent_id, secret = asked.value.intent_id, asked.value.client_secret
    assert intent_id.startswith("pi_") and secret.startswith(intent_id + "_secret_")
    assert secret not in str(asked.value)
    # Asked again before the fan authenticated: the same intent, still waiting (nothing new is made).
    with pytest.raises(ChargeRequiresAction) as again:
        await stripe_gateway.charge(amount=5000, currency="eur", token=card, idempotency_key=key, intent_id=intent_id)
    assert again.value.intent_id == intent_id
    assert await stripe_gateway.lookup(key) is None  # no money taken yet

    assert await stripe_account.authenticate(intent_id, secret, success=True) == 200
    charge = await stripe_gateway.charge(amount=5000, currency="eur", token=card, idempotency_key=key,
                                         intent_id=intent_id)
    assert charge == Charge(id=intent_id, amount=5000, currency="eur")
    assert (await stripe_account.intent(intent_id))["status"] == "succeeded"
    assert [i["id"] for i in await stripe_account.intents_with_key(key)] == [intent_id]
    assert await stripe_gateway.lookup(key) == charge


@pytest.mark.parametrize(("card", "reason"), [(CARD_3DS, "payment_intent_authentication_failure"),
                                              (CARD_3DS_THEN_DECLINED, "card_declined")])
async def test_a_failed_authentication_or_a_decline_after_it_is_a_decline(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount, card: str, reason: str) -> None:
    key = new_key()
    token = await stripe_account.payment_method(card)
    with pytest.raises(ChargeRequiresAction) as asked:
        await stripe_gateway.charge(amount=800, currency="eur", token=token, idempotency_key=key)
    await stripe_account.authenticate(asked.value.intent_id, asked.value.client_secret,
                                      success=card != CARD_3DS)
    with pytest.raises(ChargeDeclined) as declined:
        await stripe_gateway.charge(amount=800, currency="eur", token=token, idempotency_key=key,
                                    intent_id=asked.value.intent_id)
    assert declined.value.reason == reason
    assert (await stripe_account.intent(asked.value.intent_id))["status"] == "requires_payment_method"
    assert await stripe_gateway.lookup(key) is None


async def test_the_intent_of_another_purchase_is_never_reported_as_this_ones_charge(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    card = await stripe_account.payment_method(CARD_OK)
    other = await stripe_gateway.charge(amount=300, currency="eur", token=card, idempotency_key=new_key())
    with pytest.raises(ChargeDeclined, match="another purchase"):
        await stripe_gateway.charge(amount=300, currency="eur", token=card, idempotency_key=new_key(),
                                    intent_id=other.id)
    with pytest.raises(ChargeDeclined):
        await stripe_gateway.charge(amount=300, currency="eur", token=card, idempotency_key=new_key(),
                                    intent_id="pi_unknown0000000")


async def test_a_declined_card_is_a_decline_and_a_token_that_is_no_payment_method_never_reaches_stripe(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    key = new_key()
    card = await stripe_account.payment_method(CARD_DECLINED)
    with pytest.raises(ChargeDeclined) as declined:
        await stripe_gateway.charge(amount=900, currency="eur", token=card, idempotency_key=key)
    assert declined.value.reason == "card_declined"
    [intent] = await stripe_account.intents_with_key(key)
    assert intent["status"] == "requires_payment_method"
    assert await stripe_gateway.lookup(key) is None
    for token in ("tok_ok", "", "pm_ with space"):
        with pytest.raises(ChargeDeclined, match="not a Stripe payment method"):
            await stripe_gateway.charge(amount=900, currency="eur", token=token, idempotency_key=new_key())


async def test_localstripe_lets_the_generic_decline_card_succeed_so_tests_decline_with_0341(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    """A fact about the test server (Stripe itself declines 4000 0000 0000 0002)."""
    card = await stripe_account.payment_method(CARD_GENERIC_DECLINE)
    charge = await stripe_gateway.charge(amount=100, currency="eur", token=card, idempotency_key=new_key())
    assert (await stripe_account.intent(charge.id))["status"] == "succeeded"


async def test_partial_and_whole_refunds_reach_stripe_once_per_key_and_never_exceed_the_charge(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    card = await stripe_account.payment_method(CARD_OK)
    charge = await stripe_gateway.charge(amount=1000, currency="eur", token=card, idempotency_key=new_key())

    first = await stripe_gateway.refund(charge, idempotency_key="refund:a", amount=300)
    assert await stripe_gateway.refund(charge, idempotency_key="refund:a", amount=300) == first  # same key
    refunds = await stripe_account.refunds(charge.id)
    assert [(r["id"], r["amount"], r["metadata"]) for r in refunds] == [(first, 300, {"refund_key": "refund:a"})]

    with pytest.raises(RefundRefused):
        await stripe_gateway.refund(charge, idempotency_key="refund:b", amount=701)
    rest = await stripe_gateway.refund(charge, idempotency_key="refund:c")  # the whole charge: what is left
    assert sorted(r["amount"] for r in await stripe_account.refunds(charge.id)) == [300, 700]
    assert (await stripe_account.intent(charge.id))["latest_charge"]["amount_refunded"] == 1000

    # Nothing left: a whole refund again makes none and answers an earlier one; a partial one is refused.
    assert await stripe_gateway.refund(charge, idempotency_key="refund:d") in (first, rest)
    with pytest.raises(RefundRefused):
        await stripe_gateway.refund(charge, idempotency_key="refund:e", amount=1)
    assert len(await stripe_account.refunds(charge.id)) == 2


async def test_lookup_finds_the_intent_by_our_key_in_its_metadata_and_none_for_an_unknown_key(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    key = new_key()
    card = await stripe_account.payment_method(CARD_OK)
    charge = await stripe_gateway.charge(amount=4200, currency="eur", token=card, idempotency_key=key)
    assert await stripe_gateway.lookup(key) == charge
    await stripe_gateway.refund(charge, idempotency_key="refund:" + charge.id)
    assert await stripe_gateway.lookup(key) == charge  # refunded since: still the charge the key made
    assert await stripe_gateway.lookup(new_key()) is None
    assert await stripe_gateway.lookup("it's \\ quoted") is None


async def test_lookup_asks_the_search_api_where_the_server_has_one(aiohttp_server: Any,
                                                                   stripe_account: StripeAccount) -> None:
    """Stripe's own path: ``metadata['gateway_key']:'<key>'`` through the Search API (the front
    server answers it from localstripe's list), quotes and backslashes escaped."""
    front = StripeFront(stripe_account.url)
    server = await aiohttp_server(front.app())
    gateway = StripeGateway(api_key=stripe_account.api_key, api_base=str(server.make_url("")).rstrip("/"))
    try:
        key = new_key() + "'quoted\\"
        card = await stripe_account.payment_method(CARD_OK)
        charge = await gateway.charge(amount=610, currency="eur", token=card, idempotency_key=key)
        assert await gateway.lookup(key) == charge
        assert await gateway.lookup(new_key()) is None
        assert front.searches[0] == "metadata['gateway_key']:'" + key.replace("\\", "\\\\").replace("'", "\\'") + "'"
        assert len(front.searches) == 2
    finally:
        await gateway.aclose()


async def test_localstripe_ignores_idempotency_keys_so_lookup_never_relies_on_them(
        stripe_gateway: StripeGateway, stripe_account: StripeAccount) -> None:
    """The same key twice makes two intents on the test server (Stripe would answer the first
    again for 24 hours); lookup reads our metadata and reports the first, logging the double."""
    key = new_key()
    card = await stripe_account.payment_method(CARD_OK)
    first = await stripe_gateway.charge(amount=500, currency="eur", token=card, idempotency_key=key)
    second = await stripe_gateway.charge(amount=500, currency="eur", token=card, idempotency_key=key)
    assert first.id != second.id
    assert len(await stripe_account.intents_with_key(key)) == 2
    assert await stripe_gateway.lookup(key) == first


async def test_an_unreachable_stripe_is_a_gateway_failure_and_opens_the_breaker() -> None:
    gateway = StripeGateway(api_key="sk_test_" + secrets.token_urlsafe(32),
                            api_base=f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    charge = Charge(id="pi_gone", amount=100, currency="eur")
    try:
        with pytest.raises(GatewayFailure):
            await gateway.charge(amount=100, currency="eur", token="pm_card_visa", idempotency_key=new_key())
        with pytest.raises(GatewayFailure):
            await gateway.lookup(new_key())
        with pytest.raises(GatewayFailure):
            await gateway.refund(charge, idempotency_key="refund:gone")

        payments = Payments(gateway, TicketingMetrics(), attempts=1, breaker_failures=2, breaker_reset_s=60)
        for _ in range(2):
            with pytest.raises(PaymentGatewayError):
                await payments.charge(amount=100, currency="eur", token="pm_card_visa", idempotency_key=new_key())
        assert await payments.breaker_state() == "opened"
        with pytest.raises(PaymentGatewayUnavailable) as unavailable:
            await payments.charge(amount=100, currency="eur", token="pm_card_visa", idempotency_key=new_key())
        assert 1 <= unavailable.value.retry_after_s <= 60
    finally:
        await gateway.aclose()


async def test_payments_hands_3d_secure_back_untouched_without_retry_or_breaker_count(
        stripe_account: StripeAccount) -> None:
    gateway = StripeGateway(api_key=stripe_account.api_key, api_base=stripe_account.url)
    metrics = TicketingMetrics()
    payments = Payments(gateway, metrics, attempts=3, retry_base_ms=1, breaker_failures=1)
    try:
        card = await stripe_account.payment_method(CARD_3DS)
        key = new_key()
        for _ in range(3):
            with pytest.raises(ChargeRequiresAction) as asked:
                await payments.charge(amount=700, currency="eur", token=card, idempotency_key=key,
                                      metadata={"hold_id": "h-3ds"}, intent_id=None)
        assert await payments.breaker_state() == "closed"
        assert metrics.payment_attempts_total.labels("requires_action")._value.get() == 3  # one attempt each
        assert len(await stripe_account.intents_with_key(key)) == 3  # localstripe ignores the key (see above)
        await stripe_account.authenticate(asked.value.intent_id, asked.value.client_secret)
        charge = await payments.charge(amount=700, currency="eur", token=card, idempotency_key=key,
                                       intent_id=asked.value.intent_id)
        assert charge.id == asked.value.intent_id
        assert (await stripe_account.intent(charge.id))["metadata"]["hold_id"] == "h-3ds"
    finally:
        await gateway.aclose()


async def test_many_charges_are_in_flight_at_once_and_the_event_loop_never_stalls(
        aiohttp_server: Any, stripe_account: StripeAccount) -> None:
    delay_s, charges = 0.3, 40
    front = await aiohttp_server(StripeFront(stripe_account.url, delay_s=delay_s).app())
    gateway = StripeGateway(api_key=stripe_account.api_key, api_base=str(front.make_url("")).rstrip("/"))
    cards = [await stripe_account.payment_method(CARD_OK) for _ in range(charges)]
    stalls: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:  # how late a 10 ms sleep wakes up while the charges run
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            stalls.append(time.perf_counter() - start - 0.01)

    watcher = asyncio.create_task(probe())
    try:
        start = time.perf_counter()
        results = await asyncio.gather(*(gateway.charge(amount=100 + i, currency="eur", token=card,
                                                        idempotency_key=new_key())
                                         for i, card in enumerate(cards)))
        elapsed = time.perf_counter() - start
    finally:
        done.set()
        await watcher
        await gateway.aclose()
    assert sorted(c.amount for c in results) == [100 + i for i in range(charges)]
    # One at a time would take charges x delay (12 s); in flight together, about one delay.
    print(f"{charges} charges through a {delay_s} s server: {elapsed:.2f} s, longest loop stall "
          f"{max(stalls) * 1000:.1f} ms")
    assert elapsed < 4 * delay_s, elapsed
    assert max(stalls) < 0.25, max(stalls)  # a call holding the loop would stall it a whole delay (0.3 s)


async def test_a_purchase_charges_one_payment_intent_and_cancelling_the_event_refunds_it_at_stripe(
        shop: Any, make_event: Any, create_user: Any, stripe_gateway: StripeGateway,
        stripe_account: StripeAccount) -> None:
    client = await shop(gateway=stripe_gateway, payment_retry_attempts=1)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1", "s2"])
    card = await stripe_account.payment_method(CARD_OK)
    resp = await buy(client, fan, hold["hold_id"], token=card)
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    [row] = await client.app[ORDERS].confirmed_orders(int(event["id"]), 10, [])
    intent = await stripe_account.intent(row.charge_id)
    assert intent["status"] == "succeeded" and intent["amount"] == order["total"] == row.amount
    assert intent["metadata"]["gateway_key"]

    organizer = event["_organizer"]
    assert (await client.delete(f"/api/events/{event['id']}", headers=organizer.headers)).status in (200, 204)
    run = await refund_event_orders(client.app[ORDERS], client.app[PURCHASES].payments, int(event["id"]))
    assert (run.refunded, run.failed) == (1, 0)
    [refund] = await stripe_account.refunds(row.charge_id)
    assert refund["amount"] == row.amount and refund["metadata"] == {"refund_key": "refund:" + row.charge_id}
