"""HTTP handler of the gateway's webhooks, and the cleanup context building its store.

``POST /api/payments/webhook`` is called by Stripe, server to server: no bearer token, no cookie. It is
authenticated by the ``Stripe-Signature`` of its body (ticketing/payments/webhooks.py), not by the
policy table (stagedoor/policy.py decides what a signed-in principal may do; Stripe is none). The edge's
CSRF guard still runs on it, and passes Stripe's deliveries as it passes any request without browser
headers (no ``Origin``, no ``Sec-Fetch-Site``); a request a browser marks cross-site is refused before
the signature is even read, which costs Stripe nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor import errors
from stagedoor.openapi import Api
from stagedoor.web import DB, SETTINGS, json_response
from ticketing.appkeys import METRICS, PAYMENT_WEBHOOKS
from ticketing.payments import webhooks
from ticketing.payments.webhook_store import WebhookStore

api = Api(tag="payments")


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    app[PAYMENT_WEBHOOKS] = WebhookStore(app[DB])
    yield


@api.post("/api/payments/webhook", body="Stripe event (JSON), signed", response=webhooks.Receipt,
          errors=(400, 404, 413, 503),
          summary="Stripe webhooks: Stripe-Signature checked (400 when wrong or older than 300 s), stored once per "
                  "Stripe event id (a redelivery answers 200 and changes nothing); 404 when no webhook secret is "
                  "configured")
async def payment_webhook(request: web.Request) -> web.Response:
    limit = request.app[SETTINGS].max_body_bytes
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.PayloadTooLarge(f"body exceeds the {limit} byte limit", limit_bytes=limit) from None
    receipt = await webhooks.receive(request.app[PAYMENT_WEBHOOKS], request.app[METRICS],
                                     request.app[SETTINGS].stripe_webhook_secret or "", body,
                                     request.headers.get("Stripe-Signature"))
    return json_response(receipt)
