"""The gateway's side of reconciliation, over HTTP with the gateway double (tests/support/payments.py):
an abandoned 3-D Secure payment is cancelled at the gateway before its attempt is given up (and a fan
finishing the bank's step just before that gets the order), and the worker's gateway sweep compares
the gateway's payments with our records: a charge we never recorded is refunded and counted, refunds
made at the gateway are recorded, a refund we recorded that the gateway lacks is flagged and asked
again, the sweep goes on from where it stopped."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import pytest

from stagedoor.web import DB
from tests.support.events import buy, hold_seats
from tests.support.payments import PaymentStack, age_payments, payment_rows
from ticketing.appkeys import GATEWAY_SWEEP, RECONCILER
from ticketing.payments.gateway import ChargeRequiresAction
from ticketing.payments.records import NewPayment, PaymentRecords, purchase_key
from ticketing.payments.sweep import GatewaySweep
from ticketing.payments.sweep_store import SweepStore
from ticketing.payments.webhook_store import WebhookStore

OUR_KEY = "ab" * 20 + ":0"  # the shape of our gateway keys (<purchase_key>:<seq>), never recorded here


@pytest.fixture
def stack(payment_stack: Any) -> Any:
    # payments made in the test are swept at once
    return functools.partial(payment_stack, payment_sweep_settle_s=0, payment_sweep_overlap_s=0,
                             payment_sweep_lookback_s=3600)


async def _metric(client: Any, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def _waiting_for_3ds(s: PaymentStack, fan: Any, hold: dict[str, Any], key: str = "k") -> tuple[str, str]:
    """A purchase's charge attempt whose payment waits for the fan's 3-D Secure step, as the purchase
    leaves it when it answers 202: the attempt names the intent (charge_id). (gateway key, intent id)"""
    records = PaymentRecords(s.shop.app[DB])
    opened = await records.open(NewPayment(
        purchase_key=purchase_key(fan.id, key, hold["hold_id"]), user_id=fan.id, gateway="mock",
        hold_id=hold["hold_id"], event_id=int(hold["event_id"]), idempotency_key=key, fingerprint="f",
        email="fan@example.test", subtotal=hold["total"], discount=0, discount_code_id=None, amount=hold["total"],
        currency=hold["currency"]))
    assert opened is not None and opened.inserted
    with pytest.raises(ChargeRequiresAction) as asked:
        await s.gateway.charge(amount=hold["total"], currency=hold["currency"], token="tok_3ds",
                               idempotency_key=opened.gateway_key)
    assert await records.mark_unknown(opened.gateway_key, "requires_action", asked.value.intent_id)
    return opened.gateway_key, asked.value.intent_id


# ---------------------------------------------------------------- abandoned 3-D Secure


async def test_an_abandoned_3d_secure_payment_is_cancelled_at_the_gateway_before_its_attempt_fails(
        stack, make_event, create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    _, intent_id = await _waiting_for_3ds(s, fan, hold)
    reconciler = s.worker.app[RECONCILER]
    assert (await reconciler.run_once()).cancelled == 0  # inside the payment window: the fan may still finish
    assert s.double.intents[intent_id]["state"] == "requires_action"

    await age_payments(s.shop.app[DB], s.settings.payment_window_s + 1)
    run = await reconciler.run_once()
    assert (run.cancelled, run.failed, run.completed) == (1, 0, 0), run
    assert s.double.intents[intent_id]["state"] == "canceled"
    assert [(r["status"], r["reason"]) for r in await payment_rows(s.shop.app[DB])] == [("failed", "cancelled")]
    assert await _metric(s.worker, 'ticketing_payments_reconciled_total{outcome="cancelled"}') == 1
    # the fan comes back from the bank's page: nothing can take money any more
    with pytest.raises(ValueError):
        s.double.authenticate(intent_id)
    assert not s.double.charges and await s.gateway.lookup(s.double.intents[intent_id]["key"]) is None
    # settled: another round does nothing
    assert await reconciler.run_once() == type(run)()


async def test_a_3d_secure_payment_finished_just_before_the_cancel_completes_the_order(
        stack, make_event, create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    _, intent_id = await _waiting_for_3ds(s, fan, hold)
    s.double.authenticate(intent_id)  # the fan finished, but the purchase was never repeated
    s.double.lookup_blind = True  # and the gateway's search has not caught up yet: only the cancel tells
    await age_payments(s.shop.app[DB], s.settings.payment_window_s + 1)
    run = await s.worker.app[RECONCILER].run_once()
    assert (run.completed, run.cancelled, run.failed) == (1, 0, 0), run
    [row] = await payment_rows(s.shop.app[DB])
    assert row["status"] == "succeeded" and row["charge_id"] == intent_id and row["order_id"] is not None
    assert s.double.intents[intent_id]["state"] == "authenticated" and not s.double.refunds


# ---------------------------------------------------------------- the gateway sweep


async def test_a_charge_under_our_key_that_we_never_recorded_is_refunded_and_counted_once(stack) -> None:
    s = await stack()
    unrecorded = s.double.charge_outside(OUR_KEY, 1500)
    foreign = s.double.charge_outside("order-77-from-another-shop", 900)
    sweep = s.worker.app[GATEWAY_SWEEP]
    run = await sweep.run_once()
    assert run.window_done and run.listed == 2 and run.findings == {"unrecorded": 1}, run
    assert s.double.refunded == {unrecorded: 1500}  # the other shop's payment on the account is not ours
    assert foreign not in s.double.refunds
    assert await _metric(s.worker, 'ticketing_payments_unrecorded_total{outcome="refunded"}') == 1
    assert await _metric(s.worker, 'ticketing_payment_sweep_findings_total{finding="unrecorded"}') == 1

    # swept again (the window overlaps): paid back already, nothing more
    await s.shop.app[DB].execute("UPDATE gateway_sweeps SET swept_until = swept_until - 60")
    again = await sweep.run_once()
    assert again.window_done and again.listed == 2 and again.findings == {}, again
    assert s.double.refund_requests == 1
    assert await _metric(s.worker, "ticketing_payments_unrecorded_total") == 1


async def test_unrecorded_charges_are_only_reported_when_the_setting_says_so(stack) -> None:
    s = await stack(payment_sweep_refund_unrecorded=False)
    s.double.charge_outside(OUR_KEY, 1500)
    run = await s.worker.app[GATEWAY_SWEEP].run_once()
    assert run.findings == {"unrecorded": 1} and not s.double.refunds
    assert await _metric(s.worker, 'ticketing_payments_unrecorded_total{outcome="left"}') == 1


async def test_charges_our_records_settle_are_left_alone(stack, make_event, create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    assert (await buy(s.shop, fan, hold["hold_id"])).status == 201
    run = await s.worker.app[GATEWAY_SWEEP].run_once()
    assert run.window_done and run.listed == 1 and run.findings == {}, run
    assert not s.double.refunds


async def test_a_second_charge_under_a_key_whose_order_has_another_is_refunded(stack, make_event,
                                                                                create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    assert (await buy(s.shop, fan, hold["hold_id"])).status == 201
    db = s.shop.app[DB]
    key, charge_id = await db.fetchrow("SELECT gateway_key, charge_id FROM payments")
    # a gateway that ignored the idempotency key made a second payment under it
    second = s.double.charge_outside(key, hold["total"], hold["currency"])
    run = await s.worker.app[GATEWAY_SWEEP].run_once()
    assert run.findings == {"duplicate_charge": 1}, run
    assert s.double.refunded == {second: hold["total"]}  # the order's own charge stands
    assert await db.fetchval("SELECT status FROM orders") == "confirmed"
    assert charge_id not in s.double.refunds


async def test_a_refund_made_at_the_gateway_is_recorded_in_full_or_in_part(stack, make_event,
                                                                          create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    other_fan = await create_user()
    whole = await hold_seats(s.shop, fan, event["id"], ["s1"])
    part = await hold_seats(s.shop, other_fan, event["id"], ["s2"])
    assert (await buy(s.shop, fan, whole["hold_id"], key="a")).status == 201
    assert (await buy(s.shop, other_fan, part["hold_id"], key="b")).status == 201
    db = s.shop.app[DB]
    charges = {r["hold_id"]: r["charge_id"] for r in await db.fetch(
        "SELECT o.hold_id, p.charge_id FROM payments p JOIN orders o ON o.id = p.order_id")}
    s.double.refund_outside(charges[whole["hold_id"]], whole["total"])
    s.double.refund_outside(charges[part["hold_id"]], 100)

    run = await s.worker.app[GATEWAY_SWEEP].run_once()
    assert run.findings == {"refunded_outside": 1, "partially_refunded_outside": 1}, run
    orders = {r["hold_id"]: r["status"] for r in await db.fetch("SELECT hold_id, status FROM orders")}
    assert orders == {whole["hold_id"]: "refunded", part["hold_id"]: "confirmed"}
    paid = {r["charge_id"]: (r["status"], r["amount_refunded"])
            for r in await db.fetch("SELECT charge_id, status, amount_refunded FROM payments")}
    assert paid == {charges[whole["hold_id"]]: ("refunded", whole["total"]),
                    charges[part["hold_id"]]: ("succeeded", 100)}
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'OrderRefunded'") == 1
    assert await _metric(s.worker, 'ticketing_refunds_total{reason="refunded_at_gateway"}') == 1
    assert not s.double.refund_keys  # stagedoor refunded nothing itself


async def test_a_refund_we_recorded_that_the_gateway_lacks_is_flagged_and_asked_again(stack, make_event,
                                                                                      create_user) -> None:
    s = await stack()
    event = await make_event(s.shop)
    fan = await create_user()
    hold = await hold_seats(s.shop, fan, event["id"], ["s1"])
    assert (await buy(s.shop, fan, hold["hold_id"])).status == 201
    db = s.shop.app[DB]
    charge_id = await db.fetchval("SELECT charge_id FROM payments")
    # recorded as refunded (say by a gateway that never had the charge), but the money never went back
    await db.execute("UPDATE orders SET status = 'refunded'")
    await db.execute("UPDATE payments SET status = 'refunded', refund_id = 're_elsewhere', refunded_at = now()")

    run = await s.worker.app[GATEWAY_SWEEP].run_once()
    assert run.findings == {"refund_missing": 1}, run
    assert s.double.refunded == {charge_id: hold["total"]}
    assert list(s.double.refund_keys) == ["refund:" + charge_id]
    flag = await db.fetchrow("SELECT kind, charge_id, order_id::text, details FROM payment_flags")
    assert flag["kind"] == "refund_missing" and flag["charge_id"] == charge_id and flag["order_id"] is not None
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'PaymentFlagged'") == 1


async def test_the_sweep_is_bounded_per_run_and_goes_on_from_where_it_stopped(stack) -> None:
    s = await stack(payment_sweep_max_payments=100)
    made = [s.double.charge_outside(f"{i:040x}:0", 100 + i) for i in range(150)]
    first = await s.worker.app[GATEWAY_SWEEP].run_once()
    assert (first.listed, first.window_done) == (100, False), first
    state = await s.shop.app[DB].fetchrow("SELECT window_to, position, lease_token FROM gateway_sweeps")
    assert state["window_to"] is not None and state["position"] and state["lease_token"] is None
    # another worker (a restart) takes over where it stopped
    worker = s.worker.app
    window_end = float(state["window_to"])  # its clock stays there: the test does not hang on a second's edge
    other = GatewaySweep(worker[GATEWAY_SWEEP].payments, SweepStore(s.shop.app[DB]), WebhookStore(s.shop.app[DB]),
                         worker[GATEWAY_SWEEP].metrics, s.settings, wall=lambda: window_end)
    second = await other.run_once()
    assert (second.listed, second.window_done) == (50, True), second
    assert sorted(s.double.refunded) == sorted(made)
    assert await s.shop.app[DB].fetchval("SELECT window_to IS NULL AND position IS NULL FROM gateway_sweeps")
    # nothing new: a run right away (on the clock of the window's end) lists nothing
    assert (await other.run_once()).pages == 0


async def test_one_sweeper_at_a_time(stack) -> None:
    s = await stack()
    store = SweepStore(s.shop.app[DB])
    holder = uuid.uuid4()
    assert await store.lease("mock", holder, int(time.time()) - 60, 60) is not None
    assert (await s.worker.app[GATEWAY_SWEEP].run_once()).leased is False
    await store.release("mock", holder)
    assert (await s.worker.app[GATEWAY_SWEEP].run_once()).leased is True
