"""HTTP handlers of purchases, orders and discount codes, and the cleanup context that builds the
purchase's collaborators."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor import rate_limit
from stagedoor.auth import require_principal, require_user
from stagedoor.bus import EMITTER
from stagedoor.openapi import Api
from stagedoor.policy import Action, authorize_action
from stagedoor.problems import render_error
from stagedoor.tasks import stop_task
from stagedoor.web import CALLS, DB, KEYRING, KEYS, SETTINGS, decode_body, json_response
from ticketing.appkeys import CLOCK, GATEWAY, HOLDS, METRICS, ORDERS, PURCHASES
from ticketing.holds import shopper_session
from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.holds.types import event_of_hold_id
from ticketing.ids import parse_event_id
from ticketing.orders import discounts, orders
from ticketing.orders.errors import PurchaseInProgress
from ticketing.orders.idempotency import IdempotencyStore
from ticketing.orders.orders import OrderOut, PurchaseRequest, PurchaseResponse
from ticketing.orders.purchase import PurchaseInput, purchase
from ticketing.orders.purchase_deps import PurchaseDeps
from ticketing.orders.sold_out import SoldOutWatch
from ticketing.orders.store import OrderStore
from ticketing.payments.charging import Payments
from ticketing.payments.records import PaymentRecords
from ticketing.shop_health import measured

logger = logging.getLogger(__name__)

api = Api(tag="orders")


async def purchases_ctx(app: web.Application) -> AsyncIterator[None]:
    """Builds the purchase collaborators (after redis_ctx, db_ctx, keyring and inventory_ctx)."""
    settings = app[SETTINGS]
    metrics = app[METRICS]
    app[ORDERS] = OrderStore(app[DB])
    admission = AdmissionHooks(app[CALLS], app[KEYS])
    idempotency = IdempotencyStore(app[CALLS], app[KEYS], settings.idempotency_inflight_ttl_s,
                                   settings.idempotency_ttl_s)
    app[PURCHASES] = PurchaseDeps(
        holds=app[HOLDS], orders=app[ORDERS],
        payments=Payments.from_settings(settings, metrics, app.get(GATEWAY)),
        idempotency=idempotency, keyring=app[KEYRING], metrics=metrics, settings=settings, admission=admission,
        sold_out=SoldOutWatch(settings.sold_out_check_interval_ms, holds=app[HOLDS], orders=app[ORDERS],
                              admission=admission),
        records=PaymentRecords(app[DB]), emitter=app.get(EMITTER),
    )
    watch = asyncio.create_task(app[PURCHASES].sold_out.run(app[CLOCK].now_ms),
                                name="sold-out-watch")
    yield
    await stop_task(watch)
    await app[PURCHASES].payments.aclose()


@api.post("/api/holds/{hold_id}/purchase", body=PurchaseRequest, response=PurchaseResponse, status=201,
          errors=(401, 402, 403, 404, 409, 410, 429, 502, 503), auth="bearer",
          extra_responses={403: shopper_session.OPENAPI_403,
                           202: "requires_action: the bank asks for 3-D Secure ({status, client_secret, "
                                "payment_intent, hold_id}); complete it with Stripe.js, then send the same "
                                "request with the same Idempotency-Key (201, 402 or 202 again)"},
          summary="Buy a hold: header Idempotency-Key required; same key again -> same response, charged once")
@measured(lambda request: event_of_hold_id(request.match_info["hold_id"]))
async def purchase_hold(request: web.Request) -> web.Response:
    app = request.app
    principal = authorize_action(await require_user(request), Action.PURCHASE)
    await rate_limit.enforce(request, "purchase", principal.id, per_ip=False)
    body = await decode_body(request, PurchaseRequest)
    req = PurchaseInput(
        hold_id=request.match_info["hold_id"], principal=principal,
        idempotency_key=request.headers.get("Idempotency-Key"), body=body,
        admission_token=request.headers.get("X-Admission-Token"), now_ms=app[CLOCK].now_ms(),
    )
    try:
        result = await purchase(app[PURCHASES], req)
    except PurchaseInProgress as exc:
        response = render_error(exc, request)
        response.headers["Retry-After"] = "1"
        return response
    return web.Response(body=result.body, status=result.status, content_type="application/json")


@api.get("/api/orders/{order_id}", response=OrderOut, errors=(401, 403, 404), auth="bearer",
         summary="An order with its tickets (owner, the event's organizer, admin)")
async def get_order(request: web.Request) -> web.Response:
    # 403 before the lookup for a caller who may read no order (an API client without orders:read);
    # someone else's order is 404 like a missing one.
    principal = authorize_action(await require_principal(request), Action.ORDER_READ)
    return json_response(await orders.get_order(request.app[ORDERS], principal, request.match_info["order_id"]))


@api.post("/api/events/{event_id}/discounts", body=discounts.DiscountIn, response=discounts.DiscountOut,
          status=201, errors=(401, 403, 404, 409), auth="bearer",
          summary="Create a discount code (percent or fixed, usage-limited, optional validity window)")
async def create_discount(request: web.Request) -> web.Response:
    principal = authorize_action(await require_principal(request), Action.EVENT_UPDATE)
    event_id = parse_event_id(request.match_info["event_id"])
    body = await decode_body(request, discounts.DiscountIn)
    created = await discounts.create_discount(request.app[ORDERS], principal, event_id, body)
    return json_response(created, status=201)


