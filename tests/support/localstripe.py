"""A real local Stripe-compatible server for the Stripe adapter's tests: localstripe (PyPI), run by
stagedoor/dev_stripe.py as a child process on a free loopback port, once per test session.

- ``localstripe``: the running server (``.url``); every test uses its own idempotency keys, so
  the tests share one server.
- ``stripe_account``: test keys plus a small raw client for what a test does beside the adapter:
  make a card's PaymentMethod (``payment_method("4242424242424242")``), play the fan's 3-D Secure
  step (``authenticate(intent_id, client_secret, success=...)``, the route localstripe's
  Stripe.js stand-in calls), read intents and refunds as the server holds them.
- ``stripe_gateway``: a ``StripeGateway`` on that server, closed after the test.

What localstripe implements, and where it differs from Stripe, is in docs/payments.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stagedoor.dev_stripe import LocalStripe, local_keys
from ticketing.payments.stripe_gateway import StripeGateway

# Stripe's test cards (https://docs.stripe.com/testing) as localstripe treats them.
CARD_OK = "4242424242424242"
CARD_3DS = "4000002760003184"           # 3-D Secure required; succeeds once authenticated
CARD_3DS_THEN_DECLINED = "4000008260003178"  # 3-D Secure required, then declined
CARD_DECLINED = "4000000000000341"      # declined when charged
CARD_GENERIC_DECLINE = "4000000000000002"  # declined by Stripe; localstripe lets it succeed


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    server = LocalStripe(Path(tmp_path_factory.mktemp("localstripe")) / "localstripe.log").start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class StripeAccount:
    url: str
    api_key: str
    publishable_key: str
    session: aiohttp.ClientSession

    async def _json(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with self.session.request(method, self.url + path, headers=headers, **kw) as resp:
            return resp.status, await resp.json()

    async def payment_method(self, number: str) -> str:
        status, body = await self._json("POST", "/v1/payment_methods", json={
            "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
        assert status == 200, body
        return str(body["id"])

    async def authenticate(self, intent_id: str, client_secret: str, *, success: bool = True) -> int:
        """The fan completes (or fails) the bank's 3-D Secure step, as the browser would (with the
        publishable key and the client secret, not the secret key)."""
        url = f"{self.url}/v1/payment_intents/{intent_id}/_authenticate?success={'true' if success else 'false'}"
        async with self.session.post(url, json={"key": self.publishable_key, "client_secret": client_secret}) as resp:
            return resp.status

    async def intent(self, intent_id: str) -> dict[str, Any]:
        status, body = await self._json("GET", f"/v1/payment_intents/{intent_id}")
        assert status == 200, body
        return body

    async def refunds(self, intent_id: str) -> list[dict[str, Any]]:
        status, body = await self._json("GET", "/v1/refunds", params={"payment_intent": intent_id, "limit": "100"})
        assert status == 200, body
        return list(body["data"])

    async def intents_with_key(self, gateway_key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = None
        while True:
            params = {"limit": "100", **({"starting_after": after} if after else {})}
            status, body = await self._json("GET", "/v1/payment_intents", params=params)
            assert status == 200, body
            found += [i for i in body["data"] if (i.get("metadata") or {}).get("gateway_key") == gateway_key]
            if not body["has_more"] or not body["data"]:
                return found
            after = body["data"][-1]["id"]


@pytest.fixture
async def stripe_account(localstripe: LocalStripe) -> AsyncIterator[StripeAccount]:
    api_key, publishable_key, _ = local_keys()
    async with aiohttp.ClientSession() as session:
        yield StripeAccount(url=localstripe.url, api_key=api_key, publishable_key=publishable_key, session=session)


@pytest.fixture
async def stripe_gateway(stripe_account: StripeAccount) -> AsyncIterator[StripeGateway]:
    gateway = StripeGateway(api_key=stripe_account.api_key, api_base=stripe_account.url, timeout_s=5.0)
    try:
        yield gateway
    finally:
        await gateway.aclose()
