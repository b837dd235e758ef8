"""A real local Stripe-compatible server for the Stripe adapter's tests: localstripe (PyPI), run by
stagedoor/dev_stripe.py as a child process on a free loopback port, once per test session.

- ``localstripe``: the running server (``.url``); every test uses its own idempotency keys, so
  the tests share one server.
- ``stripe_account``: test keys plus a small raw client for what a test does beside the adapter:
  make a card's PaymentMethod (``payment_method("4242424242424242")``), play the fan's 3-D Secure
  step (``authenticate(intent_id, client_secret, success=...)``, the route localstripe's
  Stripe.js stand-in calls), read intents and refunds as the server holds them, and act in the
  account without stagedoor (``create_intent``, ``refund_outside``: what a dashboard or another
  program would do).
- ``stripe_gateway``: a ``StripeGateway`` on that server, closed after the test.
- ``StripeFront``: a server in front of localstripe that answers each request late (a distant
  Stripe) and adds what localstripe lacks for our tests: Stripe's Search API for PaymentIntents by
  ``metadata['gateway_key']`` (answered from localstripe's list), so the adapter's search path
  runs against a server too.

What localstripe implements, and where it differs from Stripe, is in docs/payments.md.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

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

    async def create_intent(self, amount: int, card: str, metadata: dict[str, str],
                            currency: str = "eur") -> dict[str, Any]:
        """A PaymentIntent created and confirmed in the account, not through stagedoor."""
        status, body = await self._json("POST", "/v1/payment_intents", json={
            "amount": amount, "currency": currency, "payment_method": card, "confirm": True,
            "metadata": metadata})
        assert status == 200, body
        return body

    async def refund_outside(self, intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """A refund made in the account (its dashboard), not through stagedoor."""
        status, body = await self._json("POST", "/v1/refunds", json={
            "payment_intent": intent_id, **({"amount": amount} if amount is not None else {})})
        assert status == 200, body
        return body

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


_SEARCH_BY_KEY = re.compile(r"^metadata\['gateway_key'\]:'((?:[^'\\]|\\.)*)'$")
UPSTREAM = web.AppKey("upstream_session", aiohttp.ClientSession)


@dataclass
class StripeFront:
    """Serve ``app()`` (e.g. with pytest-aiohttp's ``aiohttp_server``) and point the adapter at it."""

    upstream: str
    delay_s: float = 0.0
    searches: list[str] = field(default_factory=list)  # the queries the Search API answered

    def app(self) -> web.Application:
        app = web.Application()
        app.cleanup_ctx.append(self._session_ctx)
        app.router.add_get("/v1/payment_intents/search", self._search)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _session_ctx(self, app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            app[UPSTREAM] = session
            yield

    async def _upstream(self, request: web.Request, method: str, path_qs: str,
                        body: bytes = b"") -> tuple[int, bytes]:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "content-type", "idempotency-key", "stripe-version")}
        async with request.app[UPSTREAM].request(method, self.upstream + path_qs, headers=headers,
                                                 data=body) as resp:
            return resp.status, await resp.read()

    async def _forward(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        status, body = await self._upstream(request, request.method, request.path_qs, await request.read())
        return web.Response(status=status, body=body, content_type="application/json")

    async def _search(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        query = request.query.get("query", "")
        match = _SEARCH_BY_KEY.match(query)
        if match is None:
            return web.json_response({"error": {"type": "invalid_request_error", "message": "query"}}, status=400)
        self.searches.append(query)
        key = re.sub(r"\\(.)", r"\1", match.group(1))
        found: list[dict[str, Any]] = []
        after = ""
        while True:
            status, raw = await self._upstream(
                request, "GET", "/v1/payment_intents?limit=100" + (f"&starting_after={after}" if after else ""))
            if status != 200:
                return web.Response(status=status, body=raw, content_type="application/json")
            page = json.loads(raw)
            found += [i for i in page["data"] if (i.get("metadata") or {}).get("gateway_key") == key]
            if not page["has_more"] or not page["data"]:
                break
            after = page["data"][-1]["id"]
        return web.json_response({"object": "search_result", "url": "/v1/payment_intents/search", "data": found,
                                  "has_more": False, "next_page": None})
