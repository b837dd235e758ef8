"""Prometheus metrics. Each app builds its own registry so test apps never collide.

Naming follows the Prometheus guide: one prefix per service, base units, ``_total`` on
counters, ``_seconds`` on durations. Labels take bounded values only (route templates,
outcomes, room ids), never visitor ids, order ids, IPs or raw paths.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Fan-facing budgets are 50-500 ms; buckets resolve well below and around them.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LabelCache:
    """The labelled children of one metric, kept: prometheus_client's ``labels()`` validates and
    locks on every call, a measurable share of a hot request. Label values are bounded by the
    metrics' own rule (above); the cache is still capped and starts afresh when full."""

    MAX_CHILDREN = 10_000

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            if len(self._children) >= self.MAX_CHILDREN:
                self._children.clear()
            child = self._children[values] = self._metric.labels(*values)
        return child


class InFlight:
    """The in-flight gauge as a plain counter the gauge reads at scrape time: a request's inc and
    dec are two integer updates instead of two locked gauge writes. (One event loop per process,
    so nothing else writes it concurrently.)"""

    __slots__ = ("value",)

    def __init__(self, gauge: Any) -> None:
        self.value = 0
        gauge.set_function(lambda: self.value)

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class BaseMetrics:
    """Metrics every service has. Services subclass and add their own in ``__init__``."""

    def __init__(self, app_name: str, registry: CollectorRegistry | None = None) -> None:
        self.app_name = app_name
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.http_request_duration_seconds = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            ["app", "route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_requests_in_flight = Gauge(
            "http_requests_in_flight", "Requests being served", ["app"], registry=self.registry
        )
        self.dependency_up = Gauge(
            "stagedoor_dependency_up", "1 when the last readiness probe reached the dependency",
            ["app", "dependency"], registry=self.registry,
        )
        self.problems_total = Counter(
            "stagedoor_problems_total", "Problem responses by type", ["app", "type", "status"],
            registry=self.registry,
        )
        self.rate_limit_decisions_total = Counter(
            "stagedoor_rate_limit_decisions_total",
            "Rate-limit checks by limit (endpoint class and key scope) and outcome "
            "(allowed, limited, exempt, error = Redis unreachable, let through)",
            ["app", "limit", "outcome"], registry=self.registry,
        )
        self.pow_verifications_total = Counter(
            "stagedoor_pow_verifications_total", "Proof-of-work solutions checked, by outcome",
            ["app", "outcome"], registry=self.registry,
        )
        self.csrf_rejections_total = Counter(
            "stagedoor_csrf_rejections_total", "Cookie-authenticated unsafe requests refused by the CSRF guard",
            ["app", "reason"], registry=self.registry,
        )
        self.redis_pipeline_events_total = Counter(
            "stagedoor_redis_pipeline_events_total",
            "The hot-path Redis connection (stagedoor/redis_pipeline.py): connected, connect_failed, lost, "
            "reply_timeout", ["app", "event"], registry=self.registry,
        )
        self.http_requests_in_flight.labels(app_name)
        self.request_duration = LabelCache(self.http_request_duration_seconds)  # (app, route, method, status)
        self.in_flight = InFlight(self.http_requests_in_flight.labels(app_name))
