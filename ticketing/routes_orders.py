"""HTTP handlers of purchases, orders, tickets, check-in, discount codes and sales."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor import rate_limit
from stagedoor.auth import require_principal, require_user
from stagedoor.bus import EMITTER
from stagedoor.openapi import Api
from stagedoor.problems import render_error
from stagedoor.tasks import stop_task
from stagedoor.web import CALLS, DB, KEYRING, KEYS, METRICS, REDIS, SETTINGS, decode_body, decode_query, json_response
from ticketing import checkin, discounts, orders, sales, shopper_session, tickets
from ticketing.dashboard_counters import GroupBacklog, SalesCounterStore
from ticketing.errors import PurchaseInProgress
from ticketing.events import parse_event_id
from ticketing.hold_store import HOLDS
from ticketing.idempotency import IdempotencyStore
from ticketing.inventory import clock_of
from ticketing.metrics import TicketingMetrics
from ticketing.order_store import OrderStore
from ticketing.orders import OrderOut, PurchaseRequest, PurchaseResponse
from ticketing.payments import Payments
from ticketing.purchase import AdmissionHooks, PurchaseDeps, PurchaseInput, purchase
from ticketing.purchase_sold_out import SoldOutWatch

logger = logging.getLogger(__name__)

api = Api(tag="orders")

ORDERS = web.AppKey("orders", OrderStore)
PURCHASES = web.AppKey("purchases", PurchaseDeps)
SALES_COUNTERS = web.AppKey("sales_counters", SalesCounterStore)
DASHBOARD_BACKLOG = web.AppKey("dashboard_backlog", GroupBacklog)
# Tests and benchmarks may set a gateway before startup (e.g. a MockGateway they inspect).
GATEWAY = web.AppKey("payment_gateway", object)


async def purchases_ctx(app: web.Application) -> AsyncIterator[None]:
    """Builds the purchase collaborators (after redis_ctx, db_ctx, keyring and inventory_ctx)."""
    settings = app[SETTINGS]
    metrics = app[METRICS]
    assert isinstance(metrics, TicketingMetrics)
    try:
        admission: AdmissionHooks | None = AdmissionHooks(app[CALLS], app[KEYS])
    except ImportError:
        # admission.sessions (waiting-room work) is missing: purchases still work, but shoppers'
        # sessions end only by TTL and sell-outs do not stop the queue.
        logger.error("admission_sessions_missing", extra={"missing": "admission.sessions"})
        admission = None
    app[ORDERS] = OrderStore(app[DB])
    app[SALES_COUNTERS] = SalesCounterStore(app[DB])
    app[DASHBOARD_BACKLOG] = GroupBacklog(app[REDIS], app[KEYS])
    app[PURCHASES] = PurchaseDeps(
        holds=app[HOLDS], orders=app[ORDERS],
        payments=Payments.from_settings(settings, metrics, app.get(GATEWAY)),  # type: ignore[arg-type]
        idempotency=IdempotencyStore(app[CALLS], app[KEYS], settings.idempotency_inflight_ttl_s,
                                     settings.idempotency_ttl_s),
        keyring=app[KEYRING], metrics=metrics, settings=settings, admission=admission,
        sold_out=SoldOutWatch(settings.sold_out_check_interval_ms), emitter=app.get(EMITTER),
    )
    watch = asyncio.create_task(app[PURCHASES].sold_out.run(app[PURCHASES], clock_of(app).now_ms),
                                name="sold-out-watch")
    yield
    await stop_task(watch)


@api.post("/api/holds/{hold_id}/purchase", body=PurchaseRequest, response=PurchaseResponse, status=201,
          errors=(401, 402, 403, 404, 409, 410, 429, 502, 503), auth="bearer",
          extra_responses={403: shopper_session.OPENAPI_403},
          summary="Buy a hold: header Idempotency-Key required; same key again -> same response, charged once")
async def purchase_hold(request: web.Request) -> web.Response:
    app = request.app
    principal = await require_user(request)
    await rate_limit.enforce(request, "purchase", principal.id, per_ip=False)
    body = await decode_body(request, PurchaseRequest)
    req = PurchaseInput(
        hold_id=request.match_info["hold_id"], principal=principal,
        idempotency_key=request.headers.get("Idempotency-Key"), body=body,
        admission_token=request.headers.get("X-Admission-Token"), now_ms=clock_of(app).now_ms(),
    )
    try:
        result = await purchase(app[PURCHASES], req)
    except PurchaseInProgress as exc:
        response = render_error(exc, request)
        response.headers["Retry-After"] = "1"
        return response
    return web.Response(body=result.body, status=result.status, content_type="application/json")


@api.get("/api/orders/{order_id}", response=OrderOut, errors=(401, 404), auth="bearer",
         summary="An order with its tickets (owner, the event's organizer, admin)")
async def get_order(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    return json_response(await orders.get_order(request.app[ORDERS], principal, request.match_info["order_id"]))


@api.get("/api/tickets/{ticket_id}/qr.svg", response="svg", response_content_type="image/svg+xml",
         errors=(401, 404), auth="bearer", summary="QR code (SVG) of the ticket's signed code")
async def ticket_qr(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    svg = await tickets.ticket_qr_svg(request.app[ORDERS], principal, request.match_info["ticket_id"])
    return web.Response(body=svg, content_type="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"})


@api.post("/api/checkin", body=checkin.CheckInRequest, response=checkin.CheckInResult, errors=(401, 403, 404, 409),
          auth="bearer", summary="Check a ticket code in: 200 first scan, 409 already, 404 unknown or forged")
async def check_in(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    body = await decode_body(request, checkin.CheckInRequest)
    app = request.app
    result = await checkin.check_in(app[ORDERS], app[KEYRING], app[METRICS], principal,  # type: ignore[arg-type]
                                    body.code)
    return json_response(result)


@api.post("/api/events/{event_id}/discounts", body=discounts.DiscountIn, response=discounts.DiscountOut,
          status=201, errors=(401, 403, 404, 409), auth="bearer",
          summary="Create a discount code (percent or fixed, usage-limited, optional validity window)")
async def create_discount(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    event_id = parse_event_id(request.match_info["event_id"])
    body = await decode_body(request, discounts.DiscountIn)
    created = await discounts.create_discount(request.app[ORDERS], principal, event_id, body)
    return json_response(created, status=201)


@api.get("/api/events/{event_id}/sales", query=sales.SalesQuery, response=sales.SalesOut,
         errors=(401, 403, 404), auth="bearer",
         summary="Live sales: sold, held, free, revenue, orders over time, funnel counters and their freshness "
                 "(organizer, admin)")
async def event_sales(request: web.Request) -> web.Response:
    principal = await require_principal(request)
    event_id = parse_event_id(request.match_info["event_id"])
    query = decode_query(request, sales.SalesQuery)
    app = request.app
    return json_response(await sales.event_sales(app[ORDERS], app[HOLDS], app[SALES_COUNTERS], app[DASHBOARD_BACKLOG],
                                                 principal, event_id, query))
