"""A payment gateway double over HTTP, and the shop plus worker wired to it.

``GatewayDouble`` is a small aiohttp server that keeps a ledger of charges (one per idempotency key,
as a real gateway does, with the metadata they came with) and refunds (whole or partial, one per
refund key); it can be told to charge and then not answer in time (``hang_after_charge``), to fail
before charging (``fail_before_charge``) or to refuse refunds (``refunds_down``). ``tok_3ds`` asks
for 3-D Secure until ``authenticate(intent_id)``; the charge with that ``intent_id`` then succeeds
(or is declined when the authentication failed); ``cancel`` stops a payment waiting for the fan (an
authentication after it fails). ``GET /v1/payments`` lists the ledger (with each payment's creation
time and refunded amount) for the gateway sweep; ``charge_outside(...)`` and ``refund_outside(...)``
play payments and refunds made at the gateway without stagedoor. ``HttpGateway`` is the ``PaymentGateway`` the
services use to reach it, so the ticketing app and the worker talk to one ledger, as they would to
a real gateway.

``start_payment_stack(...)`` serves the double, then the shop (ticketing app) and the worker on the
same settings, movable clock and gateway; the reconciler loop is slowed down so tests run it
themselves (``worker.app[RECONCILER].run_once()``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp import web

from stagedoor.clock import ManualClock
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings
from ticketing.app import create_app
from ticketing.appkeys import CLOCK, GATEWAY
from ticketing.payments.gateway import (
    AlreadyCharged,
    Charge,
    ChargeDeclined,
    ChargeRequiresAction,
    GatewayFailure,
    GatewayPayment,
    PaymentPage,
    RefundRefused,
    page_of,
)
from ticketing.worker import create_worker_app


@dataclass
class GatewayDouble:
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> charge
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # idempotency key -> first call's metadata
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)  # intent id -> tok_3ds payment
    refunds: dict[str, str] = field(default_factory=dict)  # charge id -> its first refund's id
    refunded: dict[str, int] = field(default_factory=dict)  # charge id -> amount refunded
    refund_keys: dict[str, str] = field(default_factory=dict)  # refund idempotency key -> refund id
    outside: dict[str, dict[str, Any]] = field(default_factory=dict)  # charge id -> a payment made without us
    charge_requests: int = 0
    refund_requests: int = 0
    hang_after_charge: int = 0  # the next N charge requests charge, then answer after hang_s
    hang_s: float = 2.0
    fail_before_charge: int = 0  # the next N charge requests answer 503 without charging
    refunds_down: bool = False
    lookup_blind: bool = False  # lookups find nothing (a search that has not caught up with the gateway yet)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/charges", self._charge)
        app.router.add_get("/v1/charges", self._lookup)
        app.router.add_post("/v1/refunds", self._refund)
        app.router.add_post("/v1/intents/{id}/cancel", self._cancel)
        app.router.add_get("/v1/payments", self._list)
        return app

    async def _charge(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.charge_requests += 1
        if self.fail_before_charge > 0:
            self.fail_before_charge -= 1
            return web.json_response({"error": "unavailable"}, status=503)
        key = body["idempotency_key"]
        self.metadata.setdefault(key, body.get("metadata") or {})
        charge = self.charges.get(key)  # a key's first charge is its answer, whatever the card
        intent_id = body.get("intent_id") or next((i for i, v in self.intents.items() if v["key"] == key), None)
        if charge is None and intent_id is not None:
            intent = self.intents.get(intent_id)
            if intent is None or intent["key"] != key:
                return web.json_response({"error": "no such payment intent"}, status=402)
            if intent["state"] == "requires_action":
                return web.json_response({"status": "requires_action", "intent_id": intent_id,
                                          "client_secret": intent["client_secret"]})
            if intent["state"] == "failed":
                return web.json_response({"error": "authentication failed"}, status=402)
            if intent["state"] == "canceled":
                return web.json_response({"error": "payment_intent_canceled"}, status=402)
            charge = self._charged(intent_id)
        if charge is None and body["token"] == "tok_3ds":
            intent_id = "pi_" + secrets.token_hex(8)
            self.intents[intent_id] = {"key": key, "amount": body["amount"], "currency": body["currency"],
                                       "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
                                       "state": "requires_action", "created": int(time.time())}
            return web.json_response({"status": "requires_action", "intent_id": intent_id,
                                      "client_secret": self.intents[intent_id]["client_secret"]})
        if charge is None and body["token"] == "tok_declined":
            return web.json_response({"error": "card_declined"}, status=402)
        if charge is None:
            charge = self.charges[key] = {"id": "ch_" + secrets.token_hex(8), "amount": body["amount"],
                                          "currency": body["currency"], "created": int(time.time())}
        if self.hang_after_charge > 0:
            self.hang_after_charge -= 1
            await asyncio.sleep(self.hang_s)  # charged, but the answer comes too late for the caller
        return web.json_response(charge)

    def _charged(self, intent_id: str) -> dict[str, Any]:
        """An authenticated intent has taken the money (as a PaymentIntent succeeds on its own)."""
        intent = self.intents[intent_id]
        charge = self.charges.get(intent["key"])
        if charge is None:
            charge = self.charges[intent["key"]] = {"id": intent_id, "amount": intent["amount"],
                                                    "currency": intent["currency"], "created": intent["created"]}
        return charge

    def _settle_authenticated(self) -> None:
        for intent_id, intent in self.intents.items():
            if intent["state"] == "authenticated":
                self._charged(intent_id)

    async def _cancel(self, request: web.Request) -> web.Response:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return web.json_response({"error": "no such payment intent"}, status=404)
        if intent["state"] == "authenticated":
            return web.json_response({"status": "succeeded", **self._charged(request.match_info["id"])})
        intent["state"] = "canceled"
        return web.json_response({"status": "canceled"})

    async def _list(self, request: web.Request) -> web.Response:
        self._settle_authenticated()
        listed = [GatewayPayment(id=c["id"], status="succeeded", amount=c["amount"], currency=c["currency"],
                                 amount_refunded=self.refunded.get(c["id"], 0), gateway_key=key, created=c["created"])
                  for key, c in self.charges.items()]
        listed += [GatewayPayment(id=i, status="succeeded", amount=c["amount"], currency=c["currency"],
                                  amount_refunded=self.refunded.get(i, 0), gateway_key=c["key"], created=c["created"])
                   for i, c in self.outside.items()]
        charged = {c["id"] for c in self.charges.values()}
        listed += [GatewayPayment(id=i, status={"failed": "requires_payment_method"}.get(v["state"], v["state"]),
                                  amount=v["amount"], currency=v["currency"], amount_refunded=0, gateway_key=v["key"],
                                  created=v["created"])
                   for i, v in self.intents.items() if i not in charged]
        page = page_of(listed, created_from=int(request.query["from"]), created_to=int(request.query["to"]),
                       after=request.query.get("after"), limit=int(request.query.get("limit", "100")))
        return web.json_response(msgspec.to_builtins(page))

    def charge_outside(self, gateway_key: str, amount: int, currency: str = "EUR") -> str:
        """A payment made at the gateway with this key in its metadata, not through stagedoor's charge
        (a process that died before recording it, a second payment under one key, another shop)."""
        charge_id = "ch_" + secrets.token_hex(8)
        self.outside[charge_id] = {"key": gateway_key, "amount": amount, "currency": currency,
                                   "created": int(time.time())}
        return charge_id

    def refund_outside(self, charge_id: str, amount: int) -> str:
        """A refund made in the gateway's dashboard, not through stagedoor."""
        refund_id = "re_" + secrets.token_hex(8)
        self.refunds.setdefault(charge_id, refund_id)
        self.refunded[charge_id] = self.refunded.get(charge_id, 0) + amount
        return refund_id

    async def _lookup(self, request: web.Request) -> web.Response:
        if self.lookup_blind:
            return web.json_response({}, status=404)
        self._settle_authenticated()
        charge = self.charges.get(request.query["idempotency_key"])
        return web.json_response(charge) if charge is not None else web.json_response({}, status=404)

    async def _refund(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.refund_requests += 1
        if self.refunds_down:
            return web.json_response({"error": "unavailable"}, status=503)
        charge_id, key, amount = body["charge_id"], body["idempotency_key"], body.get("amount")
        if key in self.refund_keys:
            return web.json_response({"id": self.refund_keys[key]})
        left = body["charge_amount"] - self.refunded.get(charge_id, 0)
        if amount is None and left <= 0 and charge_id in self.refunds:
            return web.json_response({"id": self.refunds[charge_id]})  # nothing left: a no-op
        amount = left if amount is None else amount
        if amount <= 0 or amount > left:
            return web.json_response({"error": "amount_too_large"}, status=400)
        refund_id = self.refund_keys[key] = "re_" + secrets.token_hex(8)
        self.refunds.setdefault(charge_id, refund_id)
        self.refunded[charge_id] = self.refunded.get(charge_id, 0) + amount
        return web.json_response({"id": refund_id})

    def authenticate(self, intent_id: str, *, success: bool = True) -> None:
        """The fan's 3-D Secure step for a tok_3ds payment (refused, ValueError, unless it waits for it)."""
        intent = self.intents[intent_id]
        if intent["state"] != "requires_action":
            raise ValueError(f"intent {intent_id} is {intent['state']}, not waiting for authentication")
        intent["state"] = "authenticated" if success else "failed"

    @property
    def net_charges(self) -> int:
        """Charges not refunded: what the fans paid for in the end."""
        return len([c for c in self.charges.values() if c["id"] not in self.refunds])


class HttpGateway:
    """PaymentGateway over HTTP to a GatewayDouble (a stand-in for a real gateway's adapter)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        try:
            async with self._client().request(method, self.url + path, **kw) as resp:
                return resp.status, await resp.json()
        except aiohttp.ClientError as exc:
            raise GatewayFailure(str(exc)) from exc

    async def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str,
                     metadata: Mapping[str, str] | None = None, intent_id: str | None = None) -> Charge:
        status, body = await self._call("POST", "/v1/charges", json={
            "amount": amount, "currency": currency, "token": token, "idempotency_key": idempotency_key,
            "metadata": dict(metadata or {}), "intent_id": intent_id})
        if status == 402:
            raise ChargeDeclined(body["error"])
        if status != 200:
            raise GatewayFailure(f"gateway answered {status}")
        if body.get("status") == "requires_action":
            raise ChargeRequiresAction(body["intent_id"], body["client_secret"])
        return Charge(id=body["id"], amount=body["amount"], currency=body["currency"])

    async def lookup(self, idempotency_key: str) -> Charge | None:
        status, body = await self._call("GET", "/v1/charges", params={"idempotency_key": idempotency_key})
        if status == 404:
            return None
        if status != 200:
            raise GatewayFailure(f"gateway answered {status}")
        return Charge(id=body["id"], amount=body["amount"], currency=body["currency"])

    async def cancel(self, intent_id: str) -> None:
        status, body = await self._call("POST", f"/v1/intents/{intent_id}/cancel")
        if status != 200:
            raise GatewayFailure(f"gateway answered {status}")
        if body["status"] == "succeeded":
            raise AlreadyCharged(Charge(id=body["id"], amount=body["amount"], currency=body["currency"]))

    async def list_payments(self, *, created_from: int, created_to: int, after: str | None = None,
                            limit: int = 100) -> PaymentPage:
        params = {"from": str(created_from), "to": str(created_to), "limit": str(limit),
                  **({"after": after} if after else {})}
        status, body = await self._call("GET", "/v1/payments", params=params)
        if status != 200:
            raise GatewayFailure(f"gateway answered {status}")
        return msgspec.convert(body, PaymentPage)

    async def refund(self, charge: Charge, *, idempotency_key: str, amount: int | None = None) -> str:
        status, body = await self._call("POST", "/v1/refunds", json={
            "charge_id": charge.id, "charge_amount": charge.amount, "idempotency_key": idempotency_key,
            "amount": amount})
        if status == 400:
            raise RefundRefused(body["error"])
        if status != 200:
            raise GatewayFailure(f"gateway answered {status}")
        return str(body["id"])


@dataclass
class PaymentStack:
    shop: Any  # the ticketing TestClient
    worker: Any  # the worker TestClient
    double: GatewayDouble
    gateway: HttpGateway
    settings: Settings


async def start_payment_stack(aiohttp_server: Callable[..., Any], aiohttp_client: Callable[..., Any],
                              make_settings: Callable[..., Settings], keyring: KeyRing, clock: ManualClock,
                              **overrides: Any) -> PaymentStack:
    double = GatewayDouble()
    server = await aiohttp_server(double.app())
    double.url = str(server.make_url("")).rstrip("/")
    overrides.setdefault("rate_limits_enabled", False)
    overrides.setdefault("payment_reconcile_interval_s", 3600)  # the tests run the reconciler themselves
    overrides.setdefault("payment_sweep_interval_s", 3600)  # and the gateway sweep
    overrides.setdefault("payment_retry_attempts", 1)
    overrides.setdefault("payment_attempt_timeout_s", 0.5)
    settings = make_settings(**overrides)
    gateway = HttpGateway(double.url)
    shop_app = create_app(settings, keyring)
    shop_app[CLOCK] = clock
    shop_app[GATEWAY] = gateway
    worker_app = create_worker_app(settings, keyring)
    worker_app[CLOCK] = clock
    worker_app[GATEWAY] = gateway

    async def close_gateway(_: web.Application) -> None:
        await gateway.aclose()

    worker_app.on_cleanup.append(close_gateway)
    shop = await aiohttp_client(shop_app)
    worker = await aiohttp_client(worker_app)
    return PaymentStack(shop=shop, worker=worker, double=double, gateway=gateway, settings=settings)


@pytest.fixture
def payment_stack(aiohttp_server: Any, aiohttp_client: Any, make_settings: Any, keyring: KeyRing,
                  manual_clock: ManualClock) -> Callable[..., Awaitable[PaymentStack]]:
    """``await payment_stack(**settings)``: the shop and the worker on one gateway double (above)."""
    async def start(**overrides: Any) -> PaymentStack:
        return await start_payment_stack(aiohttp_server, aiohttp_client, make_settings, keyring, manual_clock,
                                         **overrides)
    return start


async def age_payments(db: asyncpg.Pool, seconds: float) -> None:
    """Move every charge attempt's and payments row's last change ``seconds`` into the past (the payment
    window has passed)."""
    await db.execute("UPDATE charge_attempts SET updated_at = updated_at - make_interval(secs => $1)", float(seconds))
    await db.execute("UPDATE payments SET updated_at = updated_at - make_interval(secs => $1)", float(seconds))


async def make_refunds_due(db: asyncpg.Pool) -> None:
    """Bring every owed refund's next attempt to now (its backoff has passed)."""
    await db.execute("UPDATE payments SET next_attempt_at = now() WHERE status IN ('refunding', 'refund_failed')")


async def payment_rows(db: asyncpg.Pool) -> list[dict[str, Any]]:
    """Each purchase charge as it stands (the view of migration 0011), in the order they were made."""
    rows = await db.fetch("SELECT status, charge_id, order_id::text AS order_id, seq, reason, attempts, "
                          "extract(epoch FROM next_attempt_at - updated_at) AS backoff_s "
                          "FROM purchase_payments ORDER BY created_at, seq")
    return [dict(r) for r in rows]
