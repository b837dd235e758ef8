"""Browser tests with the local Stripe server: what the checkout page calls on Stripe.js that localstripe's
Stripe.js stand-in (served at ``<server>/js.stripe.com/v3/``) lacks, filled in the test only.

The page calls ``stripe.createPaymentMethod({type: "card", card})`` and, on a 202,
``stripe.handleNextAction({clientSecret})``. The stand-in's ``createPaymentMethod`` does nothing and it
has no ``handleNextAction`` (docs/payments.md, "The local Stripe server"). ``use_local_stripe_js``
intercepts the page's request for the stand-in (Playwright routing) and serves it with ``SHIM`` appended:

- ``createPaymentMethod`` posts the card element's fields to ``/v1/payment_methods`` with the publishable
  key, as Stripe.js does with Stripe. localstripe accepts the publishable key only on a few routes, so
  that one request is let through with the test account's secret key added on its way out (Playwright
  routing, in the test process: the secret never reaches the page).
- ``handleNextAction`` is the stand-in's own ``confirmCardPayment(clientSecret)``: its 3-D Secure dialog
  ("Complete authentication" / "Fail authentication"), then localstripe's
  ``POST /v1/payment_intents/<id>/_authenticate?success=...``, which is what the bank's step does there.
"""

from __future__ import annotations

from typing import Any

from tests.support.localstripe import StripeAccount

SHIM = r"""
/* Test-only (tests/support/stripe_js.py): the Stripe.js calls of the checkout page the stand-in lacks. */
(function () {
  var standIn = Stripe;
  Stripe = function (publishableKey) {
    var stripe = standIn(publishableKey);
    stripe.createPaymentMethod = async function (data) {
      var card = data && data.card && data.card.value && data.card.value.card;
      if (!card || !card.number) return {error: {type: "validation_error", message: "Your card number is incomplete."}};
      var response = await fetch(LOCALSTRIPE_BASE_API + "/v1/payment_methods", {
        method: "POST", body: JSON.stringify({key: publishableKey, type: "card", card: card})});
      var body = await response.json().catch(function () { return {}; });
      if (!response.ok || body.error) return {error: body.error || {message: "HTTP " + response.status}};
      return {paymentMethod: body};
    };
    stripe.handleNextAction = function (options) { return stripe.confirmCardPayment(options.clientSecret); };
    return stripe;
  };
})();
"""


async def use_local_stripe_js(context: Any, account: StripeAccount) -> None:
    """Route ``context``'s requests for localstripe's Stripe.js stand-in and its PaymentMethods as above."""

    async def stand_in(route: Any) -> None:
        response = await route.fetch()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        await route.fulfill(response=response, body=(await response.text()) + SHIM,
                            headers={**headers, "content-type": "application/javascript"})

    async def payment_methods(route: Any) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        await route.continue_(headers={**route.request.headers, "authorization": f"Bearer {account.api_key}"})

    await context.route(f"{account.url}/js.stripe.com/v3/", stand_in)
    await context.route(f"{account.url}/v1/payment_methods", payment_methods)
