"""The hold sweeper: reclaims expired holds (their seats were free to others already: the Lua
scripts compare expiry with ``now_ms``), announces BookingExpired through the outbox, keeps the
inventory gauges, and rebuilds an event's inventory from PostgreSQL when Redis lost it (flush,
restart without persistence, an older snapshot: detected through Redis's run_id), and hands each
swept event's counters to the worker's sell-out watch (the fallback of the purchase path's own
check: ticketing/orders/sold_out.py). The worker runs one per process; the one holding the sweeper
lock in Redis does the work.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from stagedoor.clock import Clock
from stagedoor.connections import redis_run_id
from stagedoor.logs import log_failure
from stagedoor.settings import Settings
from ticketing.catalog.inventory import Inventory
from ticketing.holds.types import TierCount
from ticketing.ids import outbox_id
from ticketing.metrics import TicketingMetrics

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500


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
            payload: dict[str, Any] = {"hold_id": hold_id, "event_id": event_id}
            if hold is not None:
                payload.update(user_id=hold.user_id, seats=hold.seats, tier=hold.tier, quantity=hold.quantity,
                               expired_at_ms=hold.expires_ms)
                if metrics is not None:
                    metrics.hold_duration_seconds.labels("expired").observe(
                        max(0, hold.expires_ms - hold.created_ms) / 1000)
            rows.append((outbox_id("BookingExpired", hold_id), "BookingExpired", hold_id, payload))
        await inventory.events.write_outbox(rows)
        await holds.ack_expired(event_id, len(batch))
        announced += len(batch)
        if metrics is not None:
            metrics.holds_swept_total.inc(len(batch))
            metrics.holds_total.labels("expired").inc(len(batch))


class HoldSweeper:
    """One per worker process; the one holding the sweeper lock in Redis does the work each tick."""

    def __init__(self, inventory: Inventory, settings: Settings, metrics: TicketingMetrics, clock: Clock, *,
                 on_counts: Callable[[str, Mapping[str, TierCount] | None], None] | None = None) -> None:
        self.inventory = inventory
        self.on_counts = on_counts  # the worker's sell-out watch (SoldOutWatch.consider): the fallback
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.run_id: str | None = None
        self.token = uuid.uuid4().hex

    async def check_redis(self, inventory: Inventory) -> None:
        """Rebuild every sellable event whose inventory Redis lost (flush, restart, old snapshot)."""
        run_id = await redis_run_id(inventory.holds.redis)  # every master's on a cluster
        restarted = self.run_id is not None and run_id != self.run_id
        self.run_id = run_id
        metrics = self.metrics
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
                metrics.inventory_rebuilds_total.labels(reason).inc()

    async def tick(self) -> None:
        inventory = self.inventory
        interval_ms = int(self.settings.hold_sweep_interval_s * 1000)
        if not await inventory.holds.take_sweeper_lock(self.token, max(5000, interval_ms * 5)):
            return
        await self.check_redis(inventory)
        now_ms = self.clock.now_ms()
        retention_ms = self.settings.hold_record_retention_s * 1000
        metrics = self.metrics
        for ev in await inventory.holds.on_sale_event_ids():
            await sweep_event(inventory, ev, now_ms, retention_ms, metrics)
            counts = await inventory.holds.tier_counts(ev)
            if self.on_counts is not None:
                self.on_counts(ev, counts)
            if counts is None:
                await inventory.holds.forget_event(ev)
                continue
            gauge = metrics.inventory_seats
            gauge.labels(ev, "free").set(sum(c.free for c in counts.values()))
            gauge.labels(ev, "sold").set(sum(c.sold for c in counts.values()))
            gauge.labels(ev, "held").set(sum(c.held for c in counts.values()))

    async def run(self) -> None:
        interval = self.settings.hold_sweep_interval_s
        while True:
            try:
                async with asyncio.timeout(max(30.0, interval * 10)):
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(logger, "hold_sweep_failed", exc)
            await asyncio.sleep(interval)
