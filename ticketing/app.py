"""The ticketing app factory: the only way to build the app, tests included."""

from __future__ import annotations

from aiohttp import web

from stagedoor.bus import emitter_ctx
from stagedoor.edge import add_routes
from stagedoor.keys import KeyRing
from stagedoor.pages import STATIC_DIR
from stagedoor.settings import Settings
from stagedoor.web import add_static, base_app, keyring_ctx
from ticketing.accounts.routes import accounts_ctx
from ticketing.accounts.routes import api as accounts_api
from ticketing.appkeys import METRICS
from ticketing.catalog.organizer import api as organizer_events_api
from ticketing.catalog.routes import api as events_api
from ticketing.catalog.routes import inventory_ctx
from ticketing.holds.routes import api as holds_api
from ticketing.metrics import TicketingMetrics
from ticketing.orders.routes import api as orders_api
from ticketing.orders.routes import purchases_ctx
from ticketing.payments.configured import gateway_ctx
from ticketing.payments.routes import api as payments_api
from ticketing.payments.routes import webhooks_ctx
from ticketing.sales.routes import api as sales_api
from ticketing.sales.routes import sales_ctx
from ticketing.shop.routes import routes as pages_routes
from ticketing.shop_health import shop_health_ctx
from ticketing.tickets.routes import api as tickets_api
from ticketing.tickets.routes import tickets_ctx
from ticketing.waitlist.routes import api as waitlist_api
from ticketing.waitlist.routes import waitlist_ctx


def create_app(settings: Settings, keyring: KeyRing | None = None) -> web.Application:
    metrics = TicketingMetrics()
    app = base_app(
        settings, metrics, [accounts_api, events_api, holds_api, orders_api, tickets_api, sales_api,
                           organizer_events_api, payments_api, waitlist_api],
        title="stagedoor ticketing",
        description="Accounts, events, seat holds, purchases, payment webhooks, tickets, check-in and waiting lists.",
        keyring=keyring,
    )
    app[METRICS] = metrics
    app.cleanup_ctx.append(keyring_ctx())
    app.cleanup_ctx.append(accounts_ctx)
    app.cleanup_ctx.append(inventory_ctx)
    app.cleanup_ctx.append(shop_health_ctx)  # admitted fans' hold/purchase latency and errors, for admission
    app.cleanup_ctx.append(emitter_ctx)  # best-effort bus events: HoldPlaced, ShopperFinished
    app.cleanup_ctx.append(gateway_ctx)  # the configured payment gateway (before everything that charges)
    app.cleanup_ctx.append(purchases_ctx)
    app.cleanup_ctx.append(webhooks_ctx)  # POST /api/payments/webhook
    app.cleanup_ctx.append(sales_ctx)
    app.cleanup_ctx.append(tickets_ctx)
    app.cleanup_ctx.append(waitlist_ctx)
    add_routes(app, pages_routes)  # HTML shop + organizer pages
    add_static(app, "/static", STATIC_DIR)
    return app
