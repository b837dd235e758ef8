"""Every AppKey of the ticketing service and its worker, typed: what the cleanup contexts build
and the handlers read. Shared keys of every service (settings, Redis, PostgreSQL, signing keys)
are in stagedoor/web.py."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:  # the key's type is for type checkers only: no runtime import, no cycle
    from rooms.shop_health import ShopHealthRecorder
    from stagedoor.clock import Clock
    from ticketing.accounts.accounts import Accounts
    from ticketing.accounts.history import UserHistoryStore
    from ticketing.accounts.oauth import TokenIssuer
    from ticketing.catalog.inventory import Inventory
    from ticketing.catalog.store import EventStore
    from ticketing.holds.store import HoldStore
    from ticketing.metrics import AccountsMetrics, TicketingMetrics
    from ticketing.notifications.service import Notifications
    from ticketing.orders.purchase_deps import PurchaseDeps
    from ticketing.orders.reconcile import Reconciler
    from ticketing.orders.sold_out import SoldOutWatch
    from ticketing.orders.store import OrderStore
    from ticketing.payments.charging import Payments
    from ticketing.payments.gateway import PaymentGateway
    from ticketing.payments.sweep import GatewaySweep
    from ticketing.payments.webhook_store import WebhookStore
    from ticketing.sales.counters import GroupBacklog, SalesCounterStore
    from ticketing.tickets.store import TicketStore
    from ticketing.waitlist.offering import WaitlistOffering
    from ticketing.waitlist.store import WaitlistStore

METRICS: web.AppKey[TicketingMetrics] = web.AppKey("ticketing_metrics")  # the same object as stagedoor.web.METRICS
CLOCK: web.AppKey[Clock] = web.AppKey("ticketing_clock")  # tests put a ManualClock here before startup

# catalog and holds (ticketing.catalog.routes.inventory_ctx)
EVENTS: web.AppKey[EventStore] = web.AppKey("events")
HOLDS: web.AppKey[HoldStore] = web.AppKey("holds")
INVENTORY: web.AppKey[Inventory] = web.AppKey("inventory")
SHOP_HEALTH: web.AppKey[ShopHealthRecorder] = web.AppKey("shop_health")  # ticketing.shop_health

# orders (ticketing.orders.routes.purchases_ctx)
ORDERS: web.AppKey[OrderStore] = web.AppKey("orders")
PURCHASES: web.AppKey[PurchaseDeps] = web.AppKey("purchases")
SALES_COUNTERS: web.AppKey[SalesCounterStore] = web.AppKey("sales_counters")
DASHBOARD_BACKLOG: web.AppKey[GroupBacklog] = web.AppKey("dashboard_backlog")
PAYMENT_WEBHOOKS: web.AppKey[WebhookStore] = web.AppKey("payment_webhooks")  # ticketing.payments.routes
GATEWAY: web.AppKey[PaymentGateway] = web.AppKey("payment_gateway")  # tests and benchmarks may set one before startup

# tickets (ticketing.tickets.routes.tickets_ctx)
TICKETS: web.AppKey[TicketStore] = web.AppKey("tickets")

# the waiting list (ticketing.waitlist.routes: waitlist_ctx; the worker's waitlist_worker_ctx)
WAITLIST: web.AppKey[WaitlistStore] = web.AppKey("waitlist")
WAITLIST_OFFERING: web.AppKey[WaitlistOffering] = web.AppKey("waitlist_offering")  # the worker only

# accounts (ticketing.accounts.routes.accounts_ctx)
ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")
ACCOUNTS_METRICS: web.AppKey[AccountsMetrics] = web.AppKey("accounts_metrics")
TOKENS: web.AppKey[TokenIssuer] = web.AppKey("token_issuer")
HISTORY: web.AppKey[UserHistoryStore] = web.AppKey("user_history")

# the worker
SWEEPER: web.AppKey[asyncio.Task[None]] = web.AppKey("hold_sweeper")
NOTIFICATIONS: web.AppKey[Notifications] = web.AppKey("notifications")
PAYMENTS: web.AppKey[Payments] = web.AppKey("worker_payments")  # the configured gateway, one breaker, for refunds
RECONCILER: web.AppKey[Reconciler] = web.AppKey("payment_reconciler")
SOLD_OUT_WATCH: web.AppKey[SoldOutWatch] = web.AppKey("worker_sold_out_watch")  # noted by the reconciler and sweeper
GATEWAY_SWEEP: web.AppKey[GatewaySweep] = web.AppKey("payment_gateway_sweep")
