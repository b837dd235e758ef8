"""The worker's event-bus consumers (stagedoor/bus.py; README "Event bus").

- group ``read_model``: the event search's availability read model (migration 0005):
  per-tier capacity and tickets sold, and per event ``tickets_left`` and the price range of
  what is left, from EventCreated/EventUpdated/EventPublished/EventCancelled/SoldOut (rows
  built) and OrderConfirmed (+ tickets) / OrderRefunded (- tickets). Each delivery's effect is
  exactly-once: ``bus_applied`` (group, event id) is inserted in the same transaction.
  "Available" means not sold: holds are short-lived Redis state (HoldPlaced is best-effort), so
  BookingExpired changes nothing here and is not subscribed.
- group ``admission``: SoldOut stops the event's waiting room (admission.sessions.mark_sold_out,
  idempotent; the purchase path already calls it at once, the bus is the durable fallback);
  ShopperFinished ends the shopper session (admission.sessions.finish_shopper, idempotent; same).
- group ``refunds``: EventCancelled refunds every confirmed order of the event
  (ticketing.payment_refunds.refund_event_orders: each order once; an order the gateway would
  not refund makes the delivery fail, so it is retried with backoff and dead-lettered after
  ``bus_max_attempts``).
- group ``dashboard``: the organizer dashboard's per-event, per-minute/hour/day counters
  (ticketing/dashboard_counters.py: orders, tickets, revenue, refunds, failed payments, expired
  holds, check-ins; exactly-once through ``bus_applied`` in the same statement). Beside its
  consumer, the worker runs the one-time backfill of the counters from the outbox in the
  background (``dashboard_backfill_ctx``; a no-op once done).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
from aiohttp import web

from admission.sessions import finish_shopper, mark_sold_out
from stagedoor.bus import consumer_ctx
from stagedoor.bus_envelope import Envelope, Handler
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.tasks import stop_task
from stagedoor.web import CALLS, DB, KEYS, METRICS, SETTINGS
from ticketing.dashboard_counters import DashboardCounters, backfill_until_done
from ticketing.order_store import OrderStore
from ticketing.payment_refunds import refund_event_orders
from ticketing.payments import Payments

logger = logging.getLogger(__name__)

APPLIED_RETENTION_S = 7 * 86_400
PURGE_EVERY_S = 600

ENSURE_TIERS = """
INSERT INTO event_tier_availability (event_id, tier, price, capacity, sold)
SELECT t.event_id, t.code, t.price,
       coalesce(t.quantity, (SELECT count(*) FROM seats s WHERE s.event_id = t.event_id AND s.tier_code = t.code)), 0
FROM price_tiers t
WHERE t.event_id = $1 AND NOT EXISTS (SELECT 1 FROM event_tier_availability a WHERE a.event_id = $1)
ON CONFLICT (event_id, tier) DO NOTHING
"""
ADD_SOLD = """
UPDATE event_tier_availability a SET sold = greatest(0, a.sold + $3 * c.n)
FROM (SELECT tier, count(*)::int AS n FROM tickets WHERE order_id = $2 GROUP BY tier) c
WHERE a.event_id = $1 AND a.tier = c.tier
"""
SUMMARIZE = """
UPDATE events e SET tickets_left = a.left_, available_min_price = a.min_p, available_max_price = a.max_p
FROM (SELECT coalesce(sum(greatest(capacity - sold, 0)), 0)::int AS left_,
             min(price) FILTER (WHERE sold < capacity) AS min_p, max(price) FILTER (WHERE sold < capacity) AS max_p
      FROM event_tier_availability WHERE event_id = $1) a
WHERE e.id = $1
"""
APPLY = """
INSERT INTO bus_applied (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true
"""
PURGE_APPLIED = "DELETE FROM bus_applied WHERE applied_at < now() - make_interval(secs => $1)"


class ReadModel:
    """Handler of the ``read_model`` group."""

    event_types = frozenset({"EventCreated", "EventUpdated", "EventPublished", "EventCancelled", "SoldOut",
                             "OrderConfirmed", "OrderRefunded"})

    def __init__(self, pool: asyncpg.Pool, group: str = "read_model") -> None:
        self.pool = pool
        self.group = group
        self._purged_at = 0.0

    async def __call__(self, env: Envelope) -> None:
        raw_event = env.payload.get("event_id")
        if raw_event is None or not str(raw_event).isdigit():
            return
        event_id = int(raw_event)
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(APPLY, self.group, uuid.UUID(env.event_id)):
                return  # applied before (a redelivery)
            await conn.execute(ENSURE_TIERS, event_id)
            if env.event_type in ("OrderConfirmed", "OrderRefunded"):
                sign = 1 if env.event_type == "OrderConfirmed" else -1
                await conn.execute(ADD_SOLD, event_id, uuid.UUID(str(env.payload["order_id"])), sign)
            await conn.execute(SUMMARIZE, event_id)
        if time.monotonic() - self._purged_at > PURGE_EVERY_S:
            self._purged_at = time.monotonic()
            await self.pool.execute(PURGE_APPLIED, float(APPLIED_RETENTION_S))


class AdmissionSignals:
    """Handler of the ``admission`` group."""

    event_types = frozenset({"SoldOut", "ShopperFinished"})

    def __init__(self, calls: RedisCalls, keys: RedisKeys) -> None:
        self.calls = calls
        self.keys = keys

    async def __call__(self, env: Envelope) -> None:
        now_ms = int(time.time() * 1000)
        if env.event_type == "SoldOut":
            event_id = str(env.payload["event_id"])
            room = await self.calls.redis.get(self.keys.event_room(event_id))
            if room is not None:
                await mark_sold_out(self.calls, self.keys, room.decode() if isinstance(room, bytes) else room, now_ms)
        elif env.event_type == "ShopperFinished":
            await finish_shopper(self.calls, self.keys, str(env.payload["room"]), str(env.payload["visitor_id"]),
                                 now_ms)


class CancellationRefunds:
    """Handler of the ``refunds`` group."""

    event_types = frozenset({"EventCancelled"})

    def __init__(self, orders: OrderStore, payments: Payments) -> None:
        self.orders = orders
        self.payments = payments

    async def __call__(self, env: Envelope) -> None:
        run = await refund_event_orders(self.orders, self.payments, int(env.payload["event_id"]))
        logger.info("event_refunds_done", extra={"event_id": env.payload["event_id"], "refunded": run.refunded,
                                                 "failed": run.failed})
        if run.failed:
            raise RuntimeError(f"{run.failed} order(s) not refunded yet")


def _read_model(app: web.Application) -> Handler:
    return ReadModel(app[DB])


def _admission(app: web.Application) -> Handler:
    return AdmissionSignals(app[CALLS], app[KEYS])


def _refunds(app: web.Application) -> Handler:
    from ticketing.routes_orders import GATEWAY

    payments = Payments.from_settings(app[SETTINGS], app[METRICS], app.get(GATEWAY))  # type: ignore[arg-type]
    return CancellationRefunds(OrderStore(app[DB]), payments)


def _dashboard(app: web.Application) -> Handler:
    return DashboardCounters(app[DB])


CONSUMER_FACTORIES: dict[str, Callable[[web.Application], Handler]] = {
    "read_model": _read_model, "admission": _admission, "refunds": _refunds, "dashboard": _dashboard}


async def dashboard_backfill_ctx(app: web.Application) -> AsyncIterator[None]:
    """Counts what the outbox holds from before the ``dashboard`` group existed, once per database,
    in a background task (ticketing/dashboard_counters.py explains why it may run before, during
    or after the group's consumer without counting anything twice)."""
    task = asyncio.create_task(backfill_until_done(app[DB]), name="dashboard-backfill")
    yield
    await stop_task(task)


def add_consumers(app: web.Application) -> None:
    """The worker's consumer groups, one cleanup context each."""
    app.cleanup_ctx.append(dashboard_backfill_ctx)
    for group, factory in CONSUMER_FACTORIES.items():
        app.cleanup_ctx.append(consumer_ctx(group, factory))
