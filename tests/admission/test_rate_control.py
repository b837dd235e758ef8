"""The automatic rate's control law (admission/rate_control.py), as a pure function."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from admission.rate_control import RateLaw, RateTargets, next_rate
from rooms.shop_health import HealthWindow, window_of

LAW = RateLaw()
TARGETS = RateTargets(rate_min_per_s=2.0, rate_max_per_s=50.0, target_p99_ms=1000, target_error_rate=0.01)
HEALTHY = HealthWindow(requests=500, errors=1, p99_ms=250)
SLOW = HealthWindow(requests=500, errors=0, p99_ms=2500)
FAILING = HealthWindow(requests=500, errors=50, p99_ms=100)

windows = st.builds(lambda n, e, p99: HealthWindow(requests=n, errors=min(e, n), p99_ms=p99),
                    st.integers(0, 10_000), st.integers(0, 10_000),
                    st.sampled_from([0.0, 5.0, 100.0, 1000.0, 2500.0, 20000.0]))
bounds = st.tuples(st.floats(0.01, 1000), st.floats(0.01, 1000)).map(sorted)


@given(bounds=bounds, start=st.floats(0, 2000), steps=st.lists(st.tuples(windows, st.booleans()), max_size=60),
       p99=st.integers(10, 60_000), err=st.floats(0.0001, 0.5))
def test_the_rate_always_stays_within_the_bounds(bounds: list[float], start: float,
                                                 steps: list[tuple[HealthWindow, bool]], p99: int, err: float) -> None:
    targets = RateTargets(rate_min_per_s=bounds[0], rate_max_per_s=bounds[1], target_p99_ms=p99,
                          target_error_rate=err)
    rate = start
    for health, limited in steps:
        rate = next_rate(LAW, rate, targets, health, limited).rate
        assert bounds[0] <= rate <= bounds[1]


@given(start=st.floats(2.0, 50.0), overload=st.sampled_from([SLOW, FAILING]))
def test_repeated_overload_drives_the_rate_to_its_minimum(start: float, overload: HealthWindow) -> None:
    rate, seen = start, []
    for _ in range(20):  # 50 * 0.7**11 < 2: at most a dozen periods from the top
        step = next_rate(LAW, rate, TARGETS, overload, rate_limited=True)
        assert step.rate <= rate
        rate = step.rate
        seen.append(step.direction)
    assert rate == TARGETS.rate_min_per_s
    assert seen[-1] == "hold"  # at the minimum it stays there


@given(start=st.floats(2.0, 50.0))
def test_health_with_fans_waiting_restores_the_rate_to_its_maximum(start: float) -> None:
    rate = start
    for _ in range(20):  # +2.5/s a period (5 % of 50): 20 periods from the minimum
        step = next_rate(LAW, rate, TARGETS, HEALTHY, rate_limited=True)
        assert step.rate >= rate
        rate = step.rate
    assert rate == TARGETS.rate_max_per_s


def test_one_step_of_each_kind() -> None:
    assert next_rate(LAW, 10.0, TARGETS, SLOW, True).rate == pytest.approx(7.0)
    assert next_rate(LAW, 10.0, TARGETS, SLOW, True).reason == "p99_over_target"
    assert next_rate(LAW, 10.0, TARGETS, FAILING, False).reason == "errors_over_target"  # down even if nobody waits
    assert next_rate(LAW, 10.0, TARGETS, HEALTHY, True).rate == pytest.approx(12.5)  # + 5 % of the maximum
    small = RateTargets(rate_min_per_s=1, rate_max_per_s=4, target_p99_ms=1000, target_error_rate=0.01)
    assert next_rate(LAW, 2.0, small, HEALTHY, True).rate == 3.0  # at least 1/s a step
    # nobody waiting: a higher rate would admit nobody more, so it stays
    assert next_rate(LAW, 10.0, TARGETS, HEALTHY, False).reason == "not_rate_limited"
    # too few requests to judge: no step either way
    assert next_rate(LAW, 10.0, TARGETS, HealthWindow(requests=5, errors=5, p99_ms=20000), True).rate == 10.0
    # a rate outside changed bounds is moved back within them
    assert next_rate(LAW, 80.0, TARGETS, HEALTHY, False).rate == 50.0


def test_p99_is_read_from_the_merged_histogram() -> None:
    counts = [0] * 12
    counts[2] = 990  # 990 requests at <= 25 ms
    counts[7] = 10  # 10 at <= 1000 ms: the slowest 1 %
    assert window_of(counts, 1000, 0).p99_ms == 25
    counts[7] = 11
    assert window_of(counts, 1001, 0).p99_ms == 1000
    counts[11] = 50  # beyond the last bound
    assert window_of(counts, 1051, 0).p99_ms == 20000
    assert window_of([0] * 12, 0, 0) == HealthWindow(requests=0, errors=0, p99_ms=0)


def test_a_law_with_nonsense_constants_is_refused() -> None:
    with pytest.raises(ValueError):
        RateLaw(decrease_factor=1.2)
    with pytest.raises(ValueError):
        RateLaw(period_s=0)
