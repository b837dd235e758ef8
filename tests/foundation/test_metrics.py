"""The lean metric collectors (stagedoor/metrics.py) expose what prometheus_client's own
counter, histogram and gauge would, sample for sample."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stagedoor.metrics import LATENCY_BUCKETS, InFlight, LatencyHistogram, LeanCounter


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.startswith(name) and not sample.name.endswith("_created"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@given(st.lists(st.tuples(st.sampled_from(["r1", "r2"]), st.sampled_from(["new", "rejoin", "closed"]),
                          st.integers(0, 3)), max_size=50))
def test_lean_counter_counts_as_prometheus_client_does(incs: list[tuple[str, str, int]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    lean = LeanCounter("x_joins_total", "joins", ["room", "result"], registry=ours)
    stock = Counter("x_joins_total", "joins", ["room", "result"], registry=theirs)
    for room, result, amount in incs:
        lean.labels(room, result).inc(amount)
        stock.labels(room, result).inc(amount)
    assert _samples(ours, "x_joins") == _samples(theirs, "x_joins")
    if incs:
        assert b"# TYPE x_joins_total counter" in generate_latest(ours)


def test_lean_counter_refuses_what_a_counter_refuses() -> None:
    registry = CollectorRegistry()
    counter = LeanCounter("y_total", "y", ["a"], registry=registry)
    with pytest.raises(ValueError):
        counter.labels("1", "2")
    with pytest.raises(ValueError):
        counter.labels("1").inc(-1)
    with pytest.raises(ValueError):
        LeanCounter("y_count", "no _total", [], registry=CollectorRegistry())


@given(st.lists(st.tuples(st.sampled_from([200, 404]), st.floats(0, 20, allow_nan=False)), max_size=60))
def test_latency_histogram_matches_prometheus_client(observations: list[tuple[int, float]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    lean = LatencyHistogram("h_seconds", "h", ["route", "status"], LATENCY_BUCKETS, registry=ours)
    stock = Histogram("h_seconds", "h", ["route", "status"], buckets=LATENCY_BUCKETS, registry=theirs)
    observe = lean.observer("/a")
    for status, seconds in observations:
        observe(status, seconds)
        stock.labels("/a", str(status)).observe(seconds)
    mine, want = _samples(ours, "h_seconds"), _samples(theirs, "h_seconds")
    assert mine.keys() == want.keys()
    for key, value in want.items():
        assert mine[key] == pytest.approx(value), key


def test_in_flight_is_read_at_scrape_time() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("z_in_flight", "z", ["app"], registry=registry)
    in_flight = InFlight(gauge.labels("a"))
    in_flight.inc()
    in_flight.inc()
    in_flight.dec()
    assert registry.get_sample_value("z_in_flight", {"app": "a"}) == 1
