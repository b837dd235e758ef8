"""Prometheus metrics of the admission controller and admin API (prefix ``admission_``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from stagedoor.metrics import BaseMetrics

TICK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class AdmissionMetrics(BaseMetrics):
    def __init__(self) -> None:
        super().__init__("admission")
        self.admitted_total = Counter(
            "admission_admitted_total", "Visitors admitted to the shop by this replica's ticks", ["room"],
            registry=self.registry)
        self.abandoned_total = Counter(
            "admission_abandoned_total", "Waiting visitors dropped because they stopped polling", ["room"],
            registry=self.registry)
        self.unheard_stops_total = Counter(
            "admission_unheard_stops_total",
            "Ticks that stopped admitting at a visitor who could be neither admitted nor dropped as abandoned: "
            "the room's recent heartbeats have a gap (a Redis or waiting-room outage, or an empty room)", ["room"],
            registry=self.registry)
        self.sessions_expired_total = Counter(
            "admission_sessions_expired_total", "Shopper sessions ended by their TTL", ["room"],
            registry=self.registry)
        self.active_shoppers = Gauge(
            "admission_active_shoppers", "Shoppers with a live session (as of the last tick)", ["room"],
            registry=self.registry)
        self.all_held = Gauge(
            "admission_stock_bound",
            "1 while the event's stock admits nobody more (every ticket left is held or being chosen by an active "
            "shopper) and visitors wait, as of the last tick; 0 otherwise", ["room"], registry=self.registry)
        self.waiting = Gauge(
            "admission_waiting_visitors", "Visitors waiting (as of the last tick)", ["room"], registry=self.registry)
        self.tick_duration_seconds = Histogram(
            "admission_tick_duration_seconds", "Duration of one admission tick over all rooms",
            buckets=TICK_BUCKETS, registry=self.registry)
        self.tick_errors_total = Counter(
            "admission_tick_errors_total", "Admission ticks that failed (Redis unreachable etc.)",
            registry=self.registry)
        self.rooms_rebuilt_total = Counter(
            "admission_rooms_rebuilt_total",
            "Rebuilds of every room from PostgreSQL into Redis, by reason (start, run_id, marker)", ["reason"],
            registry=self.registry)
        self.rooms_repaired_total = Counter(
            "admission_rooms_repaired_total",
            "Rooms whose copy into Redis failed after their commit and was applied by the rebuild loop",
            registry=self.registry)
        self.rooms_rebuild_errors_total = Counter(
            "admission_rooms_rebuild_errors_total", "Rebuild-loop checks that failed (Redis or PostgreSQL unreachable)",
            registry=self.registry)
        self.admission_rate = Gauge(
            "admission_rate_per_second",
            "The rate a room admits at now: its rate_per_s, or in rate_mode auto the controller's latest step",
            ["room"], registry=self.registry)
        self.admission_rate_steps_total = Counter(
            "admission_rate_steps_total", "Automatic-rate changes applied by this replica, by direction (down, up, "
            "hold: moved back within changed bounds)", ["room", "direction"], registry=self.registry)
        self.admission_rate_errors_total = Counter(
            "admission_rate_errors_total", "Automatic-rate control steps that failed (Redis unreachable etc.)",
            registry=self.registry)
