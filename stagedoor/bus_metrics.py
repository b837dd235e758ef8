"""Prometheus metrics of the event bus: the outbox relay (``ticketing_outbox_*``, it runs in the
worker) and the stream consumers (``stagedoor_bus_*``, any service may run one).

``BusMetrics.of(app_metrics)`` registers them once per app registry (several consumers and the
relay of one app share the same collectors).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stagedoor.metrics import LATENCY_BUCKETS, BaseMetrics

HANDLER_BUCKETS = (*LATENCY_BUCKETS, 30.0, 60.0)


class BusMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry(auto_describe=True)
        self.registry = r
        # relay
        self.outbox_relayed_total = Counter(
            "ticketing_outbox_relayed_total", "Outbox rows published to the bus stream, by event type "
            "(a row republished after a relay crash counts again)", ["event_type"], registry=r)
        self.outbox_lag_seconds = Gauge(
            "ticketing_outbox_lag_seconds", "Age of the oldest unpublished outbox row (0 when none), "
            "measured by the relay each tick", registry=r)
        self.outbox_relay_errors_total = Counter(
            "ticketing_outbox_relay_errors_total", "Relay ticks that failed (PostgreSQL or Redis unreachable)",
            registry=r)
        self.bus_trimmed_total = Counter(
            "stagedoor_bus_trimmed_total", "Stream entries trimmed after every consumer group was done with them",
            registry=r)
        # best-effort emitter (HoldPlaced, ShopperFinished)
        self.bus_emitted_total = Counter(
            "stagedoor_bus_emitted_total", "Best-effort events written straight to the stream, by event type",
            ["event_type"], registry=r)
        self.bus_emit_dropped_total = Counter(
            "stagedoor_bus_emit_dropped_total", "Best-effort events dropped (buffer full or Redis unreachable)",
            ["event_type"], registry=r)
        # consumers
        self.bus_handled_total = Counter(
            "stagedoor_bus_handled_total", "Deliveries a consumer group's handler completed, by event type",
            ["group", "event_type"], registry=r)
        self.bus_failed_total = Counter(
            "stagedoor_bus_failed_total", "Handler failures (each failed attempt; the entry stays pending)",
            ["group", "event_type"], registry=r)
        self.bus_dead_lettered_total = Counter(
            "stagedoor_bus_dead_lettered_total", "Entries moved to the dead-letter stream after max attempts "
            "(or undecodable)", ["group", "event_type"], registry=r)
        self.bus_duplicates_total = Counter(
            "stagedoor_bus_duplicates_total", "Deliveries skipped because the group already handled the event id",
            ["group"], registry=r)
        self.bus_claimed_total = Counter(
            "stagedoor_bus_claimed_total", "Pending entries taken over from a consumer idle longer than the "
            "claim timeout (XAUTOCLAIM)", ["group"], registry=r)
        self.bus_handler_duration_seconds = Histogram(
            "stagedoor_bus_handler_duration_seconds", "Handler run time per delivery, by group and event type",
            ["group", "event_type"], buckets=HANDLER_BUCKETS, registry=r)

    @classmethod
    def of(cls, metrics: BaseMetrics) -> BusMetrics:
        """The bus metrics registered in an app's registry (created on first use)."""
        existing: BusMetrics | None = getattr(metrics, "_bus_metrics", None)
        if existing is None:
            existing = cls(metrics.registry)
            metrics._bus_metrics = existing
        return existing
