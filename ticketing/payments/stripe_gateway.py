"""Stripe as the payment gateway: PaymentIntents through the official SDK, on the event loop.

- **Calls.** ``stripe.StripeClient`` with the SDK's own aiohttp transport (``AIOHTTPClient``) and
  its ``*_async`` methods: every request is a coroutine on the running loop, nothing waits in a
  thread (tests/ticketing/test_stripe_gateway.py keeps many charges in flight through a slow
  server and measures the loop's stalls). The SDK's own retries are off: ``Payments``
  (ticketing/payments/charging.py) retries with backoff and counts failures in its breaker.
- **Charge.** One PaymentIntent created and confirmed in one call with the fan's payment method
  (``pm_...``), amount, currency, ``allowed_payment_method_types=["card"]`` (no redirecting
  methods, so no ``return_url``) and metadata (``gateway_key``
  and what the purchase passes: hold, event, order), under our idempotency key as Stripe's
  ``Idempotency-Key``. Capture is automatic (docs/payments.md, "Capture"): a succeeded intent
  has taken the money, and the order commits right after it.
- **Outcomes.** ``succeeded`` -> Charge (id = the PaymentIntent's id; amount and currency as
  Stripe reports them). ``requires_action`` -> ChargeRequiresAction (the browser runs Stripe.js
  ``handleNextAction`` with the client secret; the purchase then charges again with
  ``intent_id``, which retrieves the intent instead of creating one). Card errors, a failed
  authentication (``requires_payment_method``), a cancelled intent -> ChargeDeclined.
  Connection errors, timeouts, 5xx, 429, authentication errors -> GatewayFailure.
- **Lookup.** Stripe keeps an idempotency key 24 hours, and a Stripe-compatible test server may
  not keep it at all, so ``lookup`` never replays a key: it finds the intents whose
  ``metadata['gateway_key']`` is ours with the Search API (eventually consistent: normally
  searchable within a minute, later during Stripe incidents), or, on a server without search, by
  listing intents (a bounded scan that answers GatewayFailure rather than a wrong "none").
- **Cancel.** An intent waiting for the fan is cancelled (``POST /v1/payment_intents/<id>/cancel``);
  a refused cancel reads the intent: already cancelled is done, succeeded is AlreadyCharged.
- **Listing.** ``list_payments`` lists intents by ``created`` range with their latest charge expanded
  (its ``amount_refunded``); a server that takes no filters on lists (localstripe answers 400) is
  listed whole, page by page, and the range applied here.
- **Refunds.** Each refund carries ``metadata['refund_key']``; a refund call first lists the
  intent's refunds, so the same key never refunds twice even after Stripe forgot the key, and a
  whole refund asks for exactly what is left.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import stripe

from stagedoor.settings import Settings
from ticketing.payments.gateway import (
    AlreadyCharged,
    Charge,
    ChargeDeclined,
    ChargeRequiresAction,
    GatewayFailure,
    GatewayPayment,
    PaymentPage,
    RefundRefused,
)

if TYPE_CHECKING:
    from stripe._base_address import BaseAddresses
    from stripe.params import PaymentIntentListParams, RefundListParams

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What a fan's browser may hand us as a payment method: a PaymentMethod, or a legacy card or source.
_PAYMENT_METHOD_RE = re.compile(r"^(pm|card|src)_[A-Za-z0-9_]+$")
# Stripe metadata: at most 50 keys, keys up to 40 characters, values up to 500.
_METADATA_KEYS, _METADATA_KEY_CHARS, _METADATA_VALUE_CHARS = 50, 40, 500
# Invalid-request codes that are about the fan's payment or the order, not about the gateway.
_REFUSING_CODES = frozenset({
    "resource_missing", "amount_too_small", "amount_too_large", "payment_intent_authentication_failure",
    "payment_method_unactivated", "payment_method_unexpected_state", "payment_method_invalid_parameter",
    "payment_method_not_available", "payment_method_provider_decline", "payment_method_currency_mismatch",
    "card_declined", "expired_card", "incorrect_cvc", "incorrect_number", "invalid_cvc", "invalid_expiry_month",
    "invalid_expiry_year", "invalid_number",
})
_REFUNDABLE_STATES = ("pending", "requires_action", "succeeded")  # refunds that count against the charge


class StripeGateway:
    """PaymentGateway over Stripe's API (``api_base``: a Stripe-compatible server instead)."""

    def __init__(self, *, api_key: str, api_base: str = "", timeout_s: float = 10.0, max_connections: int = 256,
                 scan_pages: int = 50) -> None:
        self.api_key = api_key
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.scan_pages = scan_pages  # lookup without search: at most this many pages of 100 intents
        self._client: stripe.StripeClient | None = None
        self._http: stripe.AIOHTTPClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._search: bool | None = None  # does the server answer the Search API? (None: not asked yet)
        self._list_filters: bool | None = None  # does it filter lists by created? (None: not asked yet)

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        return cls(api_key=settings.stripe_api_key or "", api_base=settings.stripe_api_base,
                   timeout_s=settings.payment_attempt_timeout_s)

    def _stripe(self) -> stripe.StripeClient:
        """The client, made on first use inside the running loop (its session belongs to that loop)."""
        if self._client is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s))
            self._http = stripe.AIOHTTPClient(session=self._session, timeout=None)
            base: BaseAddresses | None = {"api": self.api_base} if self.api_base else None
            self._client = stripe.StripeClient(self.api_key, base_addresses=base, http_client=self._http,
                                               max_network_retries=0)
        return self._client

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._client = self._http = self._session = None

    # ------------------------------------------------------------------ charge

    async def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str,
                     metadata: Mapping[str, str] | None = None, intent_id: str | None = None) -> Charge:
        client = self._stripe()
        if intent_id is not None:
            return await self._resume(client, intent_id, idempotency_key)
        if not _PAYMENT_METHOD_RE.match(token):
            raise ChargeDeclined("not a Stripe payment method")
        intent = await _call(client.v1.payment_intents.create_async({
            "amount": amount, "currency": currency.lower(), "payment_method": token, "confirm": True,
            "allowed_payment_method_types": ["card"], "capture_method": "automatic_async",
            "metadata": _metadata(metadata, idempotency_key),
        }, {"idempotency_key": idempotency_key}), refusals=True)
        return _outcome(intent.to_dict())

    async def _resume(self, client: stripe.StripeClient, intent_id: str, idempotency_key: str) -> Charge:
        """The purchase's intent as it stands now (after the fan's authentication, or not yet)."""
        intent = (await _call(client.v1.payment_intents.retrieve_async(intent_id), refusals=True)).to_dict()
        owner = (intent.get("metadata") or {}).get("gateway_key")
        if owner != idempotency_key:
            logger.error("payment_intent_of_another_purchase", extra={"intent_id": intent_id})
            raise ChargeDeclined("the payment intent belongs to another purchase")
        if intent.get("status") == "requires_confirmation":
            intent = (await _call(client.v1.payment_intents.confirm_async(intent_id), refusals=True)).to_dict()
        return _outcome(intent)

    # ------------------------------------------------------------------ lookup

    async def lookup(self, idempotency_key: str) -> Charge | None:
        intents = await self._intents_of(idempotency_key)
        succeeded = sorted((i for i in intents if i.get("status") == "succeeded"), key=lambda i: i.get("created", 0))
        if len(succeeded) > 1:
            logger.error("payment_key_charged_twice", extra={"gateway_key": idempotency_key,
                                                             "intents": [i["id"] for i in succeeded]})
        if succeeded:
            return _charge_of(succeeded[0])
        if any(i.get("status") in ("processing", "requires_capture") for i in intents):
            raise GatewayFailure("the payment is still processing")
        return None  # none made, or none that took money (declined, cancelled, waiting for the fan)

    async def _intents_of(self, idempotency_key: str) -> list[dict[str, Any]]:
        client = self._stripe()
        if self._search is not False:
            query = f"metadata['gateway_key']:'{_quoted(idempotency_key)}'"
            try:
                found = await client.v1.payment_intents.search_async({"query": query, "limit": 100})
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404:
                    raise _failure(exc) from exc
                self._search = False  # a server without the Search API (a local test server)
                logger.info("stripe_search_unavailable", extra={"api_base": self.api_base})
            except Exception as exc:
                raise _translated(exc, refusals=False) from exc
            else:
                self._search = True
                intents = [intent.to_dict() for intent in found.data]
                return [i for i in intents if (i.get("metadata") or {}).get("gateway_key") == idempotency_key]
        return await self._scan(client, idempotency_key)

    async def _scan(self, client: stripe.StripeClient, idempotency_key: str) -> list[dict[str, Any]]:
        """Intents with our key, by listing every intent (bounded: ``scan_pages`` pages of 100)."""
        matches: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(self.scan_pages):
            params: PaymentIntentListParams = {"limit": 100}
            if after:
                params["starting_after"] = after
            page = await _call(client.v1.payment_intents.list_async(params))
            items = [intent.to_dict() for intent in page.data]
            matches += [i for i in items if (i.get("metadata") or {}).get("gateway_key") == idempotency_key]
            if not page.has_more or not items:
                return matches
            after = items[-1]["id"]
        if any(i.get("status") == "succeeded" for i in matches):
            return matches
        raise GatewayFailure(f"lookup gave up after {self.scan_pages * 100} payment intents")

    # ------------------------------------------------------------------ cancel

    async def cancel(self, intent_id: str) -> None:
        client = self._stripe()
        try:
            await client.v1.payment_intents.cancel_async(intent_id)
            return
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise _failure(exc) from exc
            refused = exc  # not cancellable in its state: which one?
        except Exception as exc:
            raise _translated(exc, refusals=False) from exc
        intent = (await _call(client.v1.payment_intents.retrieve_async(intent_id))).to_dict()
        status = intent.get("status")
        if status == "canceled":
            return
        if status == "succeeded":
            raise AlreadyCharged(_charge_of(intent))
        raise GatewayFailure(f"stripe would not cancel {intent_id} ({status}): {refused.code or refused.http_status}")

    # ------------------------------------------------------------------ list

    async def list_payments(self, *, created_from: int, created_to: int, after: str | None = None,
                            limit: int = 100) -> PaymentPage:
        client = self._stripe()
        params: PaymentIntentListParams = {"limit": limit, "expand": ["data.latest_charge"]}
        if after:
            params["starting_after"] = after
        page = None
        if self._list_filters is not False:
            try:
                page = await client.v1.payment_intents.list_async(
                    {**params, "created": {"gte": created_from, "lte": created_to}})
                self._list_filters = True
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 400 or self._list_filters or "created" not in str(exc.user_message or ""):
                    raise _failure(exc) from exc
                self._list_filters = False  # a server that lists without filters (a local test server)
                logger.info("stripe_list_filters_unavailable", extra={"api_base": self.api_base})
            except Exception as exc:
                raise _translated(exc, refusals=False) from exc
        if page is None:
            page = await _call(client.v1.payment_intents.list_async(params))
        items = [intent.to_dict() for intent in page.data]
        listed = [_payment_of(i) for i in items if created_from <= int(i.get("created") or 0) <= created_to]
        return PaymentPage(payments=listed, next=str(items[-1]["id"]) if page.has_more and items else None)

    # ------------------------------------------------------------------ refund

    async def refund(self, charge: Charge, *, idempotency_key: str, amount: int | None = None) -> str:
        client = self._stripe()
        refunds = await self._refunds_of(client, charge.id)
        for refund in refunds:
            if (refund.get("metadata") or {}).get("refund_key") == idempotency_key:
                return str(refund["id"])  # this key's refund, made before
        left, earlier = _left(charge, refunds)
        whole = amount is None
        if amount is None:
            if left <= 0 and earlier is not None:
                return earlier  # nothing left: the whole charge is back already
            amount = left
        if amount <= 0 or amount > left:
            raise RefundRefused(f"cannot refund {amount} of {charge.id}: {left} left")
        try:
            made = await client.v1.refunds.create_async(
                {"payment_intent": charge.id, "amount": amount, "metadata": {"refund_key": idempotency_key}},
                {"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as exc:
            if exc.code not in ("charge_already_refunded", "amount_too_large"):
                raise _failure(exc) from exc
            # Another refund got there first (a concurrent one under another key).
            left, earlier = _left(charge, await self._refunds_of(client, charge.id))
            if whole and left <= 0 and earlier is not None:
                return earlier
            raise RefundRefused(f"stripe refused the refund of {charge.id}: {exc.code}") from exc
        except Exception as exc:
            raise _translated(exc, refusals=False) from exc
        return str(made.id)

    async def _refunds_of(self, client: stripe.StripeClient, intent_id: str) -> list[dict[str, Any]]:
        """Every refund of the intent, newest first (a charge has few)."""
        refunds: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: RefundListParams = {"payment_intent": intent_id, "limit": 100}
            if after:
                params["starting_after"] = after
            page = await _call(client.v1.refunds.list_async(params))
            items = [refund.to_dict() for refund in page.data]
            refunds += items
            if not page.has_more or not items:
                return sorted(refunds, key=lambda r: r.get("created", 0), reverse=True)
            after = items[-1]["id"]


def _left(charge: Charge, refunds: list[dict[str, Any]]) -> tuple[int, str | None]:
    """What is left of the charge after its refunds (newest first), and the newest refund's id."""
    counted = [r for r in refunds if r.get("status") in _REFUNDABLE_STATES]
    left = charge.amount - sum(int(r.get("amount") or 0) for r in counted)
    return left, (str(counted[0]["id"]) if counted else None)


def _metadata(metadata: Mapping[str, str] | None, idempotency_key: str) -> dict[str, str]:
    """The purchase's metadata within Stripe's limits, always with our key (lookup finds it by it)."""
    out = {"gateway_key": idempotency_key}  # whole: lookup matches it exactly (our keys are short)
    for key, value in (metadata or {}).items():
        if len(out) >= _METADATA_KEYS:
            break
        if key and len(key) <= _METADATA_KEY_CHARS and "[" not in key and "]" not in key:
            out.setdefault(key, str(value)[:_METADATA_VALUE_CHARS])
    return out


def _quoted(value: str) -> str:
    """A value inside single quotes of Stripe's search query language."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _charge_of(intent: Mapping[str, Any]) -> Charge:
    received = intent.get("amount_received")
    amount = received if isinstance(received, int) and received > 0 else intent["amount"]
    return Charge(id=str(intent["id"]), amount=int(amount), currency=str(intent["currency"]))


def _payment_of(intent: Mapping[str, Any]) -> GatewayPayment:
    charge = intent.get("latest_charge")
    refunded = int(charge.get("amount_refunded") or 0) if isinstance(charge, Mapping) else 0
    succeeded = intent.get("status") == "succeeded"
    key = (intent.get("metadata") or {}).get("gateway_key")
    return GatewayPayment(id=str(intent["id"]), status=str(intent.get("status")),
                          amount=_charge_of(intent).amount if succeeded else int(intent.get("amount") or 0),
                          currency=str(intent.get("currency") or ""), amount_refunded=refunded,
                          gateway_key=str(key) if key else None, created=int(intent.get("created") or 0))


def _outcome(intent: Mapping[str, Any]) -> Charge:
    """A confirmed intent's state as our outcome: a charge, or the exception that says why not."""
    status = intent.get("status")
    if status == "succeeded":
        return _charge_of(intent)
    if status == "requires_action":
        raise ChargeRequiresAction(str(intent["id"]), str(intent.get("client_secret") or ""))
    if status == "requires_payment_method":  # declined, or the fan's authentication failed
        error = intent.get("last_payment_error") or {}
        raise ChargeDeclined(str(error.get("decline_code") or error.get("code") or "payment declined"))
    if status == "canceled":
        raise ChargeDeclined("the payment was cancelled")
    raise GatewayFailure(f"payment intent is {status}")  # processing: ask again later


async def _call(awaitable: Awaitable[T], *, refusals: bool = False) -> T:
    """One SDK call, its errors as ours. ``refusals``: a request refused for the fan's payment
    (bad or unknown payment method, amount out of bounds) is a decline, not a gateway failure."""
    try:
        return await awaitable
    except Exception as exc:
        raise _translated(exc, refusals=refusals) from exc


def _translated(exc: Exception, *, refusals: bool) -> Exception:
    if isinstance(exc, stripe.CardError):
        error = exc.json_body.get("error") if isinstance(exc.json_body, dict) else None
        decline_code = error.get("decline_code") if isinstance(error, dict) else None
        return ChargeDeclined(str(decline_code or exc.code or "card_declined"))
    if isinstance(exc, stripe.InvalidRequestError) and refusals and (
            exc.http_status == 404 or exc.param == "payment_method" or (exc.code or "") in _REFUSING_CODES):
        return ChargeDeclined(str(exc.code or "invalid payment request"))
    if isinstance(exc, stripe.StripeError):
        return _failure(exc)
    if isinstance(exc, (aiohttp.ClientError, TimeoutError, OSError)):  # reading the body, after the SDK's own catch
        return GatewayFailure(f"stripe: {type(exc).__name__}")
    return exc


def _failure(exc: stripe.StripeError) -> GatewayFailure:
    """Connection errors, timeouts, 5xx, 429, bad keys: the gateway cannot serve us now."""
    logger.warning("stripe_call_failed", extra={"error": type(exc).__name__, "http_status": exc.http_status,
                                                "code": exc.code, "request_id": exc.request_id})
    return GatewayFailure(f"stripe: {type(exc).__name__} {exc.http_status or ''}".rstrip())
