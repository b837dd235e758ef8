"""The background worker: an app with no public API of its own, only /healthz, /readyz,
/metrics, whose cleanup contexts own the background loops (hold sweeper, outbox relay,
notification consumers) that the ticketing and event-bus issues add.

Hold sweeper (this module): every ``hold_sweep_interval_s`` it
- notices Redis data loss (a new Redis ``run_id``, or a sellable event whose inventory marker
  is gone) and rebuilds those events from PostgreSQL;
- reclaims expired holds of every on-sale event (sweep_expired_holds) and writes one
  BookingExpired outbox row per reclaimed hold (deterministic outbox id: written once);
- refreshes the free/held/sold gauges.
One replica sweeps at a time (a Redis lock with a TTL).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor.bus import relay_ctx
from stagedoor.bus_metrics import BusMetrics
from stagedoor.connections import redis_run_id
from stagedoor.keys import KeyRing
from stagedoor.logs import log_failure
from stagedoor.settings import Settings
from stagedoor.tasks import stop_task
from stagedoor.web import METRICS, SETTINGS, base_app, keyring_ctx
from ticketing.bus_consumers import add_consumers
from ticketing.catalog.events import outbox_id
from ticketing.holds.inventory import INVENTORY, Inventory, clock_of, inventory_ctx
from ticketing.metrics import TicketingMetrics
from ticketing.notifications.context import add_notifications

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500
SWEEPER = web.AppKey("hold_sweeper", asyncio.Task)


async def sweep_event(inventory: Inventory, event_id: str, now_ms: int, retention_ms: int,
                      metrics: TicketingMetrics | None = None) -> int:
    """Reclaim one event's expired holds and announce them; returns how many were announced."""
    holds = inventory.holds
    while True:
        result = await holds.sweep_expired(event_id, now_ms, SWEEP_BATCH, purge_before_ms=now_ms - retention_ms)
        if not result.more:
            break
    announced = 0
    while True:
        batch = await holds.peek_expired(event_id, SWEEP_BATCH)
        if not batch:
            return announced
        rows = []
        for hold_id, hold in batch:
            payload = {"hold_id": hold_id, "event_id": event_id}
            if hold is not None:
                payload.update(user_id=hold.user_id, seats=hold.seats, tier=hold.tier, quantity=hold.quantity,
                               expired_at_ms=hold.expires_ms)
                if metrics is not None:
                    metrics.hold_duration_seconds.labels("expired").observe(  # type: ignore[attr-defined]
                        max(0, hold.expires_ms - hold.created_ms) / 1000)
            rows.append((outbox_id("BookingExpired", hold_id), "BookingExpired", hold_id, payload))
        await inventory.events.write_outbox(rows)
        await holds.ack_expired(event_id, len(batch))
        announced += len(batch)
        if metrics is not None:
            metrics.holds_swept_total.inc(len(batch))  # type: ignore[attr-defined]
            metrics.holds_total.labels("expired").inc(len(batch))  # type: ignore[attr-defined]


class HoldSweeper:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.run_id: str | None = None
        self.token = uuid.uuid4().hex

    async def check_redis(self, inventory: Inventory) -> None:
        """Rebuild every sellable event whose inventory Redis lost (flush, restart, old snapshot)."""
        run_id = await redis_run_id(inventory.holds.redis)  # every master's on a cluster
        restarted = self.run_id is not None and run_id != self.run_id
        self.run_id = run_id
        metrics = self.app[METRICS]
        for event_id in await inventory.events.sellable_event_ids():
            ev = str(event_id)
            if restarted:
                reason = "redis_restarted"
            elif not await inventory.holds.is_loaded(ev):
                reason = "not_loaded"
            else:
                continue
            logger.warning("inventory_rebuild", extra={"event_id": ev, "reason": reason})
            if await inventory.rebuild_event_inventory(ev):
                metrics.inventory_rebuilds_total.labels(reason).inc()  # type: ignore[attr-defined]

    async def tick(self) -> None:
        app = self.app
        inventory = app[INVENTORY]
        redis = inventory.holds.redis
        lock = inventory.holds.keys.hold_sweeper_lock()
        interval_ms = int(app[SETTINGS].hold_sweep_interval_s * 1000)
        held = await redis.set(lock, self.token, nx=True, px=max(5000, interval_ms * 5))
        if not held and await redis.get(lock) != self.token.encode():
            return
        await redis.pexpire(lock, max(5000, interval_ms * 5))
        await self.check_redis(inventory)
        now_ms = clock_of(app).now_ms()
        retention_ms = app[SETTINGS].hold_record_retention_s * 1000
        metrics = app[METRICS]
        for ev in await inventory.holds.on_sale_event_ids():
            await sweep_event(inventory, ev, now_ms, retention_ms, metrics)  # type: ignore[arg-type]
            counts = await inventory.holds.tier_counts(ev)
            if counts is None:
                await inventory.holds.forget_event(ev)
                continue
            gauge = metrics.inventory_seats  # type: ignore[attr-defined]
            gauge.labels(ev, "free").set(sum(c.free for c in counts.values()))
            gauge.labels(ev, "sold").set(sum(c.sold for c in counts.values()))
            gauge.labels(ev, "held").set(sum(c.held for c in counts.values()))

    async def run(self) -> None:
        interval = self.app[SETTINGS].hold_sweep_interval_s
        while True:
            try:
                async with asyncio.timeout(max(30.0, interval * 10)):
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(logger, "hold_sweep_failed", exc)
            await asyncio.sleep(interval)


async def hold_sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(HoldSweeper(app).run(), name="hold-sweeper")
    app[SWEEPER] = task
    yield
    await stop_task(task)


def create_worker_app(settings: Settings, keyring: KeyRing | None = None) -> web.Application:
    app = base_app(
        settings, TicketingMetrics("worker"), [],
        title="stagedoor worker",
        description="Background loops: hold sweeper, outbox relay, consumers.",
        keyring=keyring,
    )
    app.cleanup_ctx.append(keyring_ctx())
    app.cleanup_ctx.append(inventory_ctx)
    app.cleanup_ctx.append(hold_sweeper_ctx)
    BusMetrics.of(app[METRICS])  # exported from the start (ticketing_outbox_lag_seconds, stagedoor_bus_*)
    app.cleanup_ctx.append(relay_ctx)  # outbox -> bus stream (stagedoor/bus.py)
    add_consumers(app)  # read_model, admission, refunds, dashboard (ticketing/bus_consumers.py)
    add_notifications(app)  # e-mail/SMS consumer, fan-out jobs, reminders, your turn (ticketing/notifications/)
    return app
