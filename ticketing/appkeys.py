"""Every AppKey of the ticketing service and its worker, typed: what the cleanup contexts build
and the handlers read. Shared keys of every service (settings, Redis, PostgreSQL, signing keys)
are in stagedoor/web.py."""

from __future__ import annotations

import asyncio

from aiohttp import web

from stagedoor.clock import Clock
from ticketing.accounts.accounts import Accounts
from ticketing.accounts.history import UserHistoryStore
from ticketing.accounts.oauth import TokenIssuer
from ticketing.catalog.store import EventStore
from ticketing.holds.inventory import Inventory
from ticketing.holds.store import HoldStore
from ticketing.metrics import AccountsMetrics, TicketingMetrics
from ticketing.notifications.service import Notifications
from ticketing.orders.purchase import PurchaseDeps
from ticketing.orders.store import OrderStore
from ticketing.payments.gateway import PaymentGateway
from ticketing.sales.counters import GroupBacklog, SalesCounterStore

METRICS = web.AppKey("ticketing_metrics", TicketingMetrics)  # the same object as stagedoor.web.METRICS
CLOCK = web.AppKey("ticketing_clock", Clock)  # tests put a ManualClock here before startup

# catalog and holds (ticketing.holds.routes.inventory_ctx)
EVENTS = web.AppKey("events", EventStore)
HOLDS = web.AppKey("holds", HoldStore)
INVENTORY = web.AppKey("inventory", Inventory)

# orders (ticketing.orders.routes.purchases_ctx)
ORDERS = web.AppKey("orders", OrderStore)
PURCHASES = web.AppKey("purchases", PurchaseDeps)
SALES_COUNTERS = web.AppKey("sales_counters", SalesCounterStore)
DASHBOARD_BACKLOG = web.AppKey("dashboard_backlog", GroupBacklog)
GATEWAY = web.AppKey("payment_gateway", PaymentGateway)  # tests and benchmarks may set one before startup

# accounts (ticketing.accounts.routes.accounts_ctx)
ACCOUNTS = web.AppKey("accounts", Accounts)
ACCOUNTS_METRICS = web.AppKey("accounts_metrics", AccountsMetrics)
TOKENS = web.AppKey("token_issuer", TokenIssuer)
HISTORY = web.AppKey("user_history", UserHistoryStore)

# the worker
SWEEPER = web.AppKey("hold_sweeper", asyncio.Task)
NOTIFICATIONS = web.AppKey("notifications", Notifications)
