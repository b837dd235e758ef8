"""Stripe webhooks as Stripe sends them: events built like Stripe's (``stripe_event`` and its objects),
signed with Stripe's scheme (``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``), posted
to the ticketing service; and a wait for the worker's ``payment_webhooks`` group to apply them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from ticketing.appkeys import METRICS

WEBHOOK_SECRET = "whsec_" + "t3st" * 8


def sign(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send with ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def stripe_event(event_type: str, obj: dict[str, Any], event_id: str | None = None,
                 created: int | None = None) -> bytes:
    return json.dumps({
        "id": event_id or "evt_" + secrets.token_hex(12), "object": "event", "api_version": "2024-06-20",
        "created": created or int(time.time()), "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": event_type, "data": {"object": obj},
    }).encode()


def payment_intent(pi_id: str, amount: int, *, gateway_key: str | None, currency: str = "eur",
                   status: str = "succeeded", received: int | None = None,
                   decline_code: str | None = None) -> dict[str, Any]:
    error = None if decline_code is None else {"type": "card_error", "code": "card_declined",
                                               "decline_code": decline_code, "message": "Your card was declined."}
    return {"id": pi_id, "object": "payment_intent", "amount": amount, "currency": currency, "status": status,
            "amount_received": amount if received is None and status == "succeeded" else (received or 0),
            "metadata": {"gateway_key": gateway_key, "hold_id": "h", "event_id": "1"} if gateway_key else {},
            "last_payment_error": error, "payment_method": "pm_card_visa",
            "charges": {"object": "list", "data": []}}


def charge(pi_id: str, amount: int, *, amount_refunded: int, currency: str = "eur") -> dict[str, Any]:
    return {"id": "ch_" + secrets.token_hex(8), "object": "charge", "amount": amount, "currency": currency,
            "amount_refunded": amount_refunded, "refunded": amount_refunded >= amount, "status": "succeeded",
            "payment_intent": pi_id, "metadata": {},
            "billing_details": {"email": "fan@example.test", "name": "A Fan"},
            "refunds": {"object": "list", "data": [{"id": "re_" + secrets.token_hex(8), "amount": amount_refunded}]}}


def dispute(pi_id: str, amount: int, currency: str = "eur", reason: str = "fraudulent") -> dict[str, Any]:
    return {"id": "dp_" + secrets.token_hex(8), "object": "dispute", "amount": amount, "currency": currency,
            "status": "needs_response", "reason": reason, "charge": "ch_" + secrets.token_hex(8),
            "payment_intent": pi_id}


async def post_webhook(client: Any, body: bytes, signature: str | None = "sign") -> Any:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature == "sign":
        signature = sign(body)
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return await client.post("/api/payments/webhook", data=body, headers=headers)


def effects_applied(worker: Any) -> float:
    """How many stored webhooks the worker's payment_webhooks group applied so far."""
    total = 0.0
    for family in worker.app[METRICS].registry.collect():
        if family.name == "ticketing_payment_webhook_effects":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


async def wait_applied(worker: Any, count: int, timeout_s: float = 15.0) -> None:
    """Until the worker applied ``count`` webhooks in all (its relay and consumer run in the background)."""
    deadline = time.monotonic() + timeout_s
    while effects_applied(worker) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker applied {effects_applied(worker)} webhooks, not {count}")
        await asyncio.sleep(0.05)
