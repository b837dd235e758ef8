"""Strong customer authentication (3-D Secure) over HTTP: the purchase answers 202 with what the page needs,
the hold stays locked, and the same request again with the same Idempotency-Key continues the same payment
intent: 201 once the fan authenticated, 402 (hold kept) when the bank refused. With the mock gateway
(``tok_3ds``) and against a local Stripe-compatible server (localstripe) with Stripe's 3-D Secure test card.
"""

from __future__ import annotations

from typing import Any

from stagedoor.web import DB
from tests.support.events import buy, hold_seats
from tests.support.localstripe import CARD_3DS, CARD_OK, StripeAccount
from ticketing.orders.order_commit import order_id_of
from ticketing.payments.stripe_gateway import StripeGateway

PROBLEM = "application/problem+json"


async def _seat_states(client: Any, event_id: str) -> dict[str, str]:
    resp = await client.get(f"/api/events/{event_id}/seats")
    return {s["id"]: s["state"] for s in (await resp.json())["seats"]}


async def _attempts(client: Any) -> list[dict[str, Any]]:
    rows = await client.app[DB].fetch("SELECT gateway_key, status, charge_id, order_id::text AS order_id "
                                      "FROM purchase_payments ORDER BY created_at, seq")
    return [dict(r) for r in rows]


async def test_3d_secure_answers_202_then_the_same_request_buys_once_the_fan_authenticated(
        shop: Any, make_event: Any, create_user: Any) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1", "s2"])

    resp = await buy(client, fan, hold["hold_id"], key="sca-1", token="tok_3ds")
    assert resp.status == 202, await resp.text()
    action = await resp.json()
    assert action["status"] == "requires_action" and action["client_secret"] and action["hold_id"] == hold["hold_id"]
    intent = action["payment_intent"]
    [attempt] = await _attempts(client)
    assert (attempt["status"], attempt["charge_id"], attempt["order_id"]) == ("pending", intent, None)
    # the hold is the fan's for the payment window; nothing is charged yet
    assert (await _seat_states(client, event["id"]))["s1"] == "held"
    assert client.gateway.charge_count == 0

    # back before authenticating: the same intent, still waiting
    again = await buy(client, fan, hold["hold_id"], key="sca-1", token="tok_3ds")
    assert again.status == 202 and (await again.json())["payment_intent"] == intent

    client.gateway.authenticate(intent)
    done = await buy(client, fan, hold["hold_id"], key="sca-1", token="tok_3ds")
    assert done.status == 201, await done.text()
    order = await done.json()
    assert order["order_id"] == order_id_of(attempt["gateway_key"])  # known to the gateway before the charge
    assert client.gateway.charge_count == 1
    [settled] = await _attempts(client)
    assert (settled["status"], settled["charge_id"], settled["order_id"]) == ("succeeded", intent, order["order_id"])
    states = await _seat_states(client, event["id"])
    assert states["s1"] == states["s2"] == "sold"
    # and once more: the stored answer, charged once
    replay = await buy(client, fan, hold["hold_id"], key="sca-1", token="tok_3ds")
    assert replay.status == 201 and (await replay.json())["order_id"] == order["order_id"]
    assert client.gateway.charge_count == 1


async def test_a_failed_authentication_is_402_the_hold_is_kept_and_another_card_buys_it(
        shop: Any, make_event: Any, create_user: Any) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    intent = (await (await buy(client, fan, hold["hold_id"], key="sca-2", token="tok_3ds")).json())["payment_intent"]

    client.gateway.authenticate(intent, success=False)
    refused = await buy(client, fan, hold["hold_id"], key="sca-2", token="tok_3ds")
    assert refused.status == 402 and refused.content_type == PROBLEM
    assert [a["status"] for a in await _attempts(client)] == ["failed"]
    assert (await _seat_states(client, event["id"]))["s1"] == "held"
    assert client.gateway.charge_count == 0

    paid = await buy(client, fan, hold["hold_id"], key="sca-3", token="tok_ok")
    assert paid.status == 201, await paid.text()
    assert [a["status"] for a in await _attempts(client)] == ["failed", "succeeded"]
    assert client.gateway.charge_count == 1


async def test_a_payment_needs_exactly_one_of_payment_method_and_token(shop: Any, make_event: Any,
                                                                       create_user: Any) -> None:
    client = await shop()
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    for payment in ({"method": "card"}, {"method": "card", "token": "tok_ok", "payment_method": "pm_x"},
                    {"method": "card", "payment_method": "pm x"}):
        resp = await client.post(f"/api/holds/{hold['hold_id']}/purchase",
                                 json={"payment": payment, "email": "fan@example.test"},
                                 headers={**fan.headers, "Idempotency-Key": "bad-1"})
        assert resp.status == 422 and resp.content_type == PROBLEM, payment
    assert client.gateway.calls == 0
    assert await _attempts(client) == []
    assert (await _seat_states(client, event["id"]))["s1"] == "held"


async def test_stripe_3d_secure_card_end_to_end_one_payment_intent(
        shop: Any, make_event: Any, create_user: Any, stripe_gateway: StripeGateway,
        stripe_account: StripeAccount) -> None:
    client = await shop(gateway=stripe_gateway, payment_retry_attempts=1)
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], ["s1"])
    card = await stripe_account.payment_method(CARD_3DS)

    resp = await buy(client, fan, hold["hold_id"], key="sca-stripe", token=card)
    assert resp.status == 202, await resp.text()
    action = await resp.json()
    intent = await stripe_account.intent(action["payment_intent"])
    assert intent["status"] == "requires_action"
    assert intent["metadata"]["hold_id"] == hold["hold_id"] and intent["metadata"]["order_id"]

    assert await stripe_account.authenticate(action["payment_intent"], action["client_secret"]) == 200
    done = await buy(client, fan, hold["hold_id"], key="sca-stripe", token=card)
    assert done.status == 201, await done.text()
    order = await done.json()
    assert order["order_id"] == intent["metadata"]["order_id"]
    paid = await stripe_account.intent(action["payment_intent"])
    assert paid["status"] == "succeeded" and paid["amount"] == order["total"]
    # one payment intent for this purchase at Stripe, though the fan sent the purchase twice
    assert [i["id"] for i in await stripe_account.intents_with_key(intent["metadata"]["gateway_key"])] == [
        action["payment_intent"]]

    other = await create_user()
    plain = await hold_seats(client, other, event["id"], ["s2"])
    ok = await buy(client, other, plain["hold_id"], key="plain", token=await stripe_account.payment_method(CARD_OK))
    assert ok.status == 201, await ok.text()
