"""The local Stripe server of ``stagedoor up`` and the tests (stagedoor/dev_stripe.py) adds what the checkout
page needs to pay from a browser, and nothing else: its Stripe.js stand-in comes with ``createPaymentMethod``
and ``handleNextAction``, and a publishable key makes a card PaymentMethod; every other call still needs
the secret key."""

from __future__ import annotations

from typing import Any

from stagedoor.dev_stripe import STAND_IN_COMPLETION, STAND_IN_PATH
from tests.support.localstripe import CARD_3DS, StripeAccount

CARD = {"number": CARD_3DS, "exp_month": "12", "exp_year": "2034", "cvc": "123"}


async def post(account: StripeAccount, path: str, body: dict[str, Any],
               secret: bool = False) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {account.api_key}"} if secret else {}
    async with account.session.post(account.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_the_stand_in_is_served_with_the_calls_the_checkout_page_makes(stripe_account: StripeAccount) -> None:
    async with stripe_account.session.get(stripe_account.url + STAND_IN_PATH) as resp:
        assert resp.status == 200 and resp.content_type == "application/javascript"
        script = await resp.text()
    assert script.endswith(STAND_IN_COMPLETION)
    stand_in = script.removesuffix(STAND_IN_COMPLETION)
    assert "confirmCardPayment" in stand_in and "handleNextAction" not in stand_in  # localstripe's own
    assert "stripe.createPaymentMethod = " in STAND_IN_COMPLETION
    assert "stripe.handleNextAction = " in STAND_IN_COMPLETION


async def test_a_publishable_key_makes_a_card_payment_method_that_the_secret_key_then_charges(
        stripe_account: StripeAccount) -> None:
    status, method = await post(stripe_account, "/v1/payment_methods",
                                {"key": stripe_account.publishable_key, "type": "card", "card": CARD})
    assert status == 200, method
    assert method["id"].startswith("pm_") and method["card"]["last4"] == CARD_3DS[-4:]
    assert "key" not in method  # the key authenticates; it is no field of the PaymentMethod
    intent = await stripe_account.create_intent(8000, method["id"], {"gateway_key": "dev-stripe-pk"})
    assert (intent["status"], intent["payment_method"]) == ("requires_action", method["id"])  # 3-D Secure card


async def test_everything_else_still_needs_the_secret_key(stripe_account: StripeAccount) -> None:
    pk = stripe_account.publishable_key
    _, method = await post(stripe_account, "/v1/payment_methods", {"type": "card", "card": CARD}, secret=True)
    intents_before = await stripe_account.intents_with_key("dev-stripe-refused")
    refused = [
        ("/v1/payment_methods", {"type": "card", "card": CARD}),  # no key at all
        ("/v1/payment_methods", {"key": "sk_test_in_the_body", "type": "card", "card": CARD}),
        ("/v1/payment_methods", {"key": pk, "type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"}}),
        ("/v1/payment_methods", {"key": pk, "card": CARD}),  # no type: not a card
        (f"/v1/payment_methods/{method['id']}", {"key": pk, "metadata": {"a": "b"}}),
        ("/v1/payment_intents", {"key": pk, "amount": 100, "currency": "eur", "payment_method": method["id"],
                                 "confirm": True, "metadata": {"gateway_key": "dev-stripe-refused"}}),
        ("/v1/refunds", {"key": pk, "payment_intent": "pi_unknown"}),
    ]
    for path, body in refused:
        status, answer = await post(stripe_account, path, body)
        assert (status, answer["error"]["message"]) == (401, "Unauthorized"), (path, body)
    async with stripe_account.session.get(f"{stripe_account.url}/v1/payment_methods/{method['id']}",
                                          params={"key": pk}) as resp:
        assert resp.status == 401
    assert await stripe_account.intents_with_key("dev-stripe-refused") == intents_before == []
    async with stripe_account.session.get(f"{stripe_account.url}/v1/payment_methods/{method['id']}",
                                          headers={"Authorization": f"Bearer {stripe_account.api_key}"}) as resp:
        assert (await resp.json())["metadata"] == {}  # the refused update changed nothing
