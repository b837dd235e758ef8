"""The mock gateway's 3-D Secure (``tok_3ds``), cancels, listing and partial refunds, and how ``Payments`` carries a
request for authentication: back to the caller as it came, never retried, never a breaker failure."""

from __future__ import annotations

import time

import pytest

from ticketing.metrics import TicketingMetrics
from ticketing.payments.charging import Payments
from ticketing.payments.errors import PaymentDeclined
from ticketing.payments.gateway import (
    AlreadyCharged,
    Charge,
    ChargeDeclined,
    ChargeRequiresAction,
    MockGateway,
    RefundRefused,
)


async def test_tok_3ds_asks_for_authentication_until_the_intent_is_authenticated_then_charges_once() -> None:
    gateway = MockGateway()
    with pytest.raises(ChargeRequiresAction) as asked:
        await gateway.charge(amount=2500, currency="EUR", token="tok_3ds", idempotency_key="k1",
                             metadata={"hold_id": "h1", "event_id": "3"})
    intent_id, secret = asked.value.intent_id, asked.value.client_secret
    assert secret.startswith(intent_id + "_secret_") and secret not in str(asked.value)
    assert gateway.metadata["k1"] == {"hold_id": "h1", "event_id": "3"}
    for intent in (None, intent_id):  # the same key (as a gateway replays it) or the intent: still waiting
        with pytest.raises(ChargeRequiresAction) as again:
            await gateway.charge(amount=2500, currency="EUR", token="tok_3ds", idempotency_key="k1", intent_id=intent)
        assert (again.value.intent_id, again.value.client_secret) == (intent_id, secret)
    assert gateway.charge_count == 0 and await gateway.lookup("k1") is None

    gateway.authenticate(intent_id)
    charge = await gateway.charge(amount=2500, currency="EUR", token="tok_3ds", idempotency_key="k1",
                                  intent_id=intent_id)
    assert charge == Charge(id=intent_id, amount=2500, currency="EUR")
    assert await gateway.charge(amount=2500, currency="EUR", token="tok_3ds", idempotency_key="k1") == charge
    assert gateway.charge_count == 1 and await gateway.lookup("k1") == charge


async def test_a_failed_authentication_is_declined_and_an_intent_of_another_key_is_refused() -> None:
    gateway = MockGateway()
    with pytest.raises(ChargeRequiresAction) as asked:
        await gateway.charge(amount=900, currency="EUR", token="tok_3ds", idempotency_key="k1")
    gateway.authenticate(asked.value.intent_id, success=False)
    with pytest.raises(ChargeDeclined, match="authentication failed"):
        await gateway.charge(amount=900, currency="EUR", token="tok_3ds", idempotency_key="k1",
                             intent_id=asked.value.intent_id)
    with pytest.raises(ValueError):
        gateway.authenticate(asked.value.intent_id)  # only a waiting intent can be authenticated
    with pytest.raises(ChargeDeclined, match="no such payment intent"):
        await gateway.charge(amount=900, currency="EUR", token="tok_ok", idempotency_key="k2",
                             intent_id=asked.value.intent_id)
    assert gateway.charge_count == 0 and await gateway.lookup("k1") is None


async def test_the_other_test_tokens_keep_their_answers() -> None:
    gateway = MockGateway(slow_ms=1)
    assert (await gateway.charge(amount=1, currency="EUR", token="tok_ok", idempotency_key="a")).amount == 1
    assert (await gateway.charge(amount=2, currency="EUR", token="tok_slow", idempotency_key="b")).amount == 2
    with pytest.raises(ChargeDeclined):
        await gateway.charge(amount=3, currency="EUR", token="tok_declined", idempotency_key="c")
    with pytest.raises(ChargeDeclined):
        await gateway.charge(amount=3, currency="EUR", token="pm_card_visa", idempotency_key="d")
    assert gateway.charge_count == 2


async def test_payments_hands_back_a_request_for_authentication_without_retrying_or_opening_the_breaker() -> None:
    gateway = MockGateway()
    metrics = TicketingMetrics()
    payments = Payments(gateway, metrics, attempts=3, retry_base_ms=1, breaker_failures=1)
    for _ in range(3):
        with pytest.raises(ChargeRequiresAction) as asked:
            await payments.charge(amount=700, currency="EUR", token="tok_3ds", idempotency_key="k3ds",
                                  metadata={"order_id": "o1"})
    assert gateway.calls == 3  # one attempt per charge
    assert await payments.breaker_state() == "closed"
    assert metrics.payment_attempts_total.labels("requires_action")._value.get() == 3
    gateway.authenticate(asked.value.intent_id)
    charge = await payments.charge(amount=700, currency="EUR", token="tok_3ds", idempotency_key="k3ds",
                                   intent_id=asked.value.intent_id)
    assert charge.id == asked.value.intent_id and gateway.metadata["k3ds"] == {"order_id": "o1"}
    assert metrics.payment_attempts_total.labels("ok")._value.get() == 1

    with pytest.raises(ChargeRequiresAction) as other:
        await payments.charge(amount=100, currency="EUR", token="tok_3ds", idempotency_key="k-fail")
    gateway.authenticate(other.value.intent_id, success=False)
    with pytest.raises(PaymentDeclined):
        await payments.charge(amount=100, currency="EUR", token="tok_3ds", idempotency_key="k-fail",
                              intent_id=other.value.intent_id)


async def test_partial_refunds_add_up_to_the_charge_once_per_key() -> None:
    gateway = MockGateway()
    payments = Payments(gateway, TicketingMetrics(), attempts=1)
    charge = await gateway.charge(amount=1000, currency="EUR", token="tok_ok", idempotency_key="k")
    first = await payments.refund(charge, idempotency_key="r1", amount=250)
    assert await payments.refund(charge, idempotency_key="r1", amount=250) == first
    with pytest.raises(RefundRefused):
        await payments.refund(charge, idempotency_key="r2", amount=751)
    rest = await payments.refund(charge, idempotency_key="r3")
    assert rest not in (None, first) and gateway.refunded[charge.id] == 1000
    assert await payments.refund(charge, idempotency_key="r4") == first  # nothing left: no new refund
    assert gateway.refunded[charge.id] == 1000 and gateway.refunds == {charge.id: first}


async def test_a_cancelled_intent_can_never_be_charged_and_one_authenticated_before_the_cancel_was_charged() -> None:
    gateway = MockGateway()
    with pytest.raises(ChargeRequiresAction) as waiting:
        await gateway.charge(amount=900, currency="EUR", token="tok_3ds", idempotency_key="k1")
    await gateway.cancel(waiting.value.intent_id)
    await gateway.cancel(waiting.value.intent_id)  # again: nothing more to do
    with pytest.raises(ValueError):
        gateway.authenticate(waiting.value.intent_id)
    with pytest.raises(ChargeDeclined, match="cancelled"):
        await gateway.charge(amount=900, currency="EUR", token="tok_3ds", idempotency_key="k1",
                             intent_id=waiting.value.intent_id)
    assert gateway.charge_count == 0 and await gateway.lookup("k1") is None

    with pytest.raises(ChargeRequiresAction) as finished:
        await gateway.charge(amount=700, currency="EUR", token="tok_3ds", idempotency_key="k2")
    gateway.authenticate(finished.value.intent_id)  # the fan finished: the money is taken
    with pytest.raises(AlreadyCharged) as charged:
        await gateway.cancel(finished.value.intent_id)
    assert charged.value.charge == Charge(id=finished.value.intent_id, amount=700, currency="EUR")
    assert await gateway.lookup("k2") == charged.value.charge


async def test_the_mock_lists_its_payments_by_creation_time_with_their_refunds_in_pages() -> None:
    gateway = MockGateway()
    made = [await gateway.charge(amount=100 + i, currency="EUR", token="tok_ok", idempotency_key=f"k{i}")
            for i in range(3)]
    await gateway.refund(made[0], idempotency_key="r", amount=40)
    with pytest.raises(ChargeRequiresAction):
        await gateway.charge(amount=5, currency="EUR", token="tok_3ds", idempotency_key="k3")
    now = int(time.time())
    first = await gateway.list_payments(created_from=now - 60, created_to=now + 1, limit=2)
    rest = await gateway.list_payments(created_from=now - 60, created_to=now + 1, after=first.next, limit=2)
    assert first.next is not None and rest.next is None
    listed = {p.gateway_key: p for p in first.payments + rest.payments}
    assert set(listed) == {"k0", "k1", "k2", "k3"}
    assert (listed["k0"].status, listed["k0"].amount, listed["k0"].amount_refunded) == ("succeeded", 100, 40)
    assert listed["k3"].status == "requires_action"
    assert (await gateway.list_payments(created_from=now + 60, created_to=now + 120)).payments == []


async def test_payments_refund_a_part_through_the_gateway_that_took_the_charge_and_no_other() -> None:
    configured, earlier = MockGateway(), MockGateway()
    built: list[str] = []

    def other(name: str) -> MockGateway | None:
        built.append(name)
        return earlier if name == "mock" else None

    payments = Payments(configured, TicketingMetrics(), attempts=1, gateway_name="stripe", other_gateway=other)
    charge = await earlier.charge(amount=1000, currency="EUR", token="tok_ok", idempotency_key="k")
    assert await payments.refund(charge, idempotency_key="r1", amount=300, gateway="mock") is not None
    assert earlier.refunded == {charge.id: 300} and not configured.refunded
    assert await payments.refund(charge, idempotency_key="r2", gateway="mock") is not None  # the rest
    assert earlier.refunded == {charge.id: 1000} and built == ["mock"]  # built once, kept
    with pytest.raises(RefundRefused):
        await payments.refund(charge, idempotency_key="r3", amount=1, gateway="mock")

    assert await payments.refund(charge, idempotency_key="r4", gateway="paypal") is None  # never sent elsewhere
    assert not configured.refund_keys
    assert payments.metrics.registry.get_sample_value("ticketing_payment_gateway_missing_total",
                                                      {"gateway": "paypal"}) == 1
    await payments.aclose()
