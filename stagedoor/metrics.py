"""Prometheus metrics. Each app builds its own registry so test apps never collide.

Naming follows the Prometheus guide: one prefix per service, base units, ``_total`` on
counters, ``_seconds`` on durations. Labels take bounded values only (route templates,
outcomes, room ids), never visitor ids, order ids, IPs or raw paths.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from stagedoor.bus_metrics import BusMetrics

# Fan-facing budgets are 50-500 ms; buckets resolve well below and around them.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram(Collector):
    """A Prometheus histogram for the one observation every request makes, kept lean.

    prometheus_client's ``Histogram.observe`` takes a lock for the sum and one per bucket and
    walks the bounds in Python; here an observation is one ``bisect`` and two list updates. Each
    series (a label set) is a list of per-bucket counts with the sum last, cumulated only when
    Prometheus scrapes. Observers are bound per route up front, so the request pays no label
    lookup either, only a dict get by status code. One event loop per process writes and
    scrapes, so no lock is needed; the series are bounded by the routes times the statuses.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram buckets must increase")
        self._series: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def _series_for(self, labels: tuple[str, ...]) -> list[float]:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"expected labels {self.labelnames}, got {labels}")
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [0] * (len(self.bounds) + 1) + [0.0]  # counts..., +Inf, sum
        return series

    def observer(self, *labels: str) -> Callable[[int, float], None]:
        """``observe(status, seconds)`` for the series ``(*labels, str(status))``: the last label
        is the response status, the rest are fixed here."""
        by_status: dict[int, list[float]] = {}
        bounds = self.bounds
        sum_at = len(bounds) + 1

        def observe(status: int, seconds: float) -> None:
            series = by_status.get(status)
            if series is None:
                series = by_status[status] = self._series_for((*labels, str(status)))
            series[bisect_left(bounds, seconds)] += 1  # le: a value equal to a bound counts in it
            series[sum_at] += seconds

        return observe

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        bounds = [*(str(b) for b in self.bounds), "+Inf"]
        for labels, series in list(self._series.items()):
            cumulative, total = [], 0
            for le, count in zip(bounds, series, strict=False):
                total += int(count)
                cumulative.append((le, total))
            family.add_metric(list(labels), cumulative, sum_value=series[-1])
        yield family


class LeanCounter(Collector):
    """A labelled Prometheus counter for a hot path: ``labels(*values)`` gives a child whose
    ``inc()`` is one integer add. prometheus_client's counter takes a lock per increment; one
    event loop per process writes and scrapes here, so none is needed. Exposed as
    ``<name>_total``, like any counter (without the ``_created`` sample)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total: {name!r}")
        self.name, self.documentation = name.removesuffix("_total"), documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Count] = {}
        registry.register(self)

    def labels(self, *values: str) -> Count:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"expected labels {self.labelnames}, got {values}")
            child = self._children[values] = Count()
        return child

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family


class Count:
    """A counter's value (a LeanCounter's child, or a count kept alone)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


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

    _bus_metrics: BusMetrics  # the bus's, once BusMetrics.of made them (stagedoor/bus_metrics.py)

    def __init__(self, app_name: str, registry: CollectorRegistry | None = None) -> None:
        self.app_name = app_name
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.http_request_duration_seconds = LatencyHistogram(
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
        self.hot_http_total = LeanCounter(
            "stagedoor_hot_http_total",
            "Requests the hot HTTP layer (stagedoor/hot_http/) did not serve itself: 'passed' to aiohttp "
            "(the connection stays hot), or connections 'handed_off' to aiohttp for good (framing it leaves "
            "to aiohttp), or connections closed because a request's head or body did not arrive in time "
            "('timed_out'); hot requests are counted by http_request_duration_seconds",
            ["app", "way"], self.registry,
        )
        self.http_requests_in_flight.labels(app_name)
        self.in_flight = InFlight(self.http_requests_in_flight.labels(app_name))
