"""The controller's side of the automatic rate: once per control period and room, read the
room's rate settings and shop health, take a step of the law (admission/rate_control.py) and
apply it through lua/set_auto_rate.lua.

Replicas need no coordination here either: each computes its step from what Redis holds, and
the script applies only the first step of a period, and only onto the rate it was computed
from. Three replicas therefore take exactly the steps one would, one per period.
"""

from __future__ import annotations

import logging

from admission.metrics import AdmissionMetrics
from admission.rate_control import RateLaw, RateTargets, Step, next_rate
from rooms.auto_rate_store import AutoRateStore
from rooms.queue_store import TickResult
from rooms.shop_health import ShopHealthReader

logger = logging.getLogger(__name__)


class AutoRate:
    def __init__(self, store: AutoRateStore, health: ShopHealthReader, metrics: AdmissionMetrics,
                 law: RateLaw | None = None) -> None:
        self.store = store
        self.health = health
        self.metrics = metrics
        self.law = law or RateLaw()
        self._stepped: dict[str, int] = {}  # room -> the last period this process looked at it

    def period_of(self, now_ms: int) -> int:
        return int(now_ms // (self.law.period_s * 1000))

    def due(self, room: str, now_ms: int) -> bool:
        return self._stepped.get(room) != self.period_of(now_ms)

    async def control(self, room: str, now_ms: int, tick: TickResult | None) -> Step | None:
        """At most once per period and room in this process: the step taken, None if none was due,
        the room is not in auto mode, or another replica took this period's step."""
        period = self.period_of(now_ms)
        if self._stepped.get(room) == period:
            return None
        self._stepped[room] = period
        if len(self._stepped) > 10_000:
            self._stepped = {room: period}
        cfg = await self.store.config(room)
        if cfg is None:
            return None
        self.metrics.admission_rate.labels(room).set(cfg.rate)
        if not cfg.auto:
            return None
        health = await self.health.window(room, now_ms / 1000, self.law.window_s)
        limited = tick is not None and tick.outcome == "ok" and tick.waiting > 0
        targets = RateTargets(rate_min_per_s=cfg.rate_min_per_s, rate_max_per_s=cfg.rate_max_per_s,
                              target_p99_ms=cfg.target_p99_ms, target_error_rate=cfg.target_error_rate)
        step = next_rate(self.law, cfg.rate, targets, health, limited)
        if step.rate == cfg.rate:
            return step
        outcome = await self.store.set_rate(room, period, cfg.raw_rate, step.rate)
        if outcome != "applied":
            return None
        self.metrics.admission_rate.labels(room).set(step.rate)
        self.metrics.admission_rate_steps_total.labels(room, step.direction).inc()
        logger.info("admission_rate_changed", extra={
            "room": room, "rate_from": cfg.rate, "rate_to": step.rate, "reason": step.reason,
            "p99_ms": health.p99_ms, "error_rate": round(health.error_rate, 4), "requests": health.requests,
            "rate_limited": limited})
        return step
