"""The automatic admission rate (room setting ``rate_mode: "auto"``): the control law.

Every ``period_s`` the controller reads the room's last ``window_s`` seconds of shop health
(rooms/shop_health.py: ticketing's own measurements of its admitted fans' hold and purchase
requests) and takes one step, AIMD as TCP does for a congested link:

- **decrease** (overload): the window's p99 latency is above ``target_p99_ms`` or its error rate
  above ``target_error_rate`` -> ``rate * decrease_factor``, not below ``rate_min_per_s``;
- **increase** (room to grow): healthy, and admission was actually held back by the rate (fans
  were waiting at the last tick and the room was admitting) -> ``rate + max(min_step_per_s,
  increase_fraction * rate_max_per_s)``, not above ``rate_max_per_s``;
- **hold** otherwise: healthy but nobody waiting (a higher rate would admit nobody more), or too
  few requests in the window (``min_requests``) to judge either way.

Its state is the room's current rate (the config hash's ``rate``) and the period of its last step
(lua/set_auto_rate.lua); :func:`next_rate` is a pure function of them and the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rooms.shop_health import HealthWindow

Reason = Literal["p99_over_target", "errors_over_target", "rate_limited_and_healthy", "not_rate_limited",
                 "too_few_requests", "at_max", "at_min"]


@dataclass(frozen=True)
class RateLaw:
    period_s: float = 2.0
    window_s: int = 10
    decrease_factor: float = 0.7
    increase_fraction: float = 0.05
    min_step_per_s: float = 1.0
    min_requests: int = 20

    def __post_init__(self) -> None:
        if not 0 < self.decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        if self.period_s <= 0 or self.window_s < 1 or self.increase_fraction < 0 or self.min_step_per_s <= 0:
            raise ValueError("period_s, window_s and min_step_per_s must be positive, increase_fraction not negative")


@dataclass(frozen=True)
class RateTargets:
    """A room's auto-rate settings (rooms/store.py)."""

    rate_min_per_s: float
    rate_max_per_s: float
    target_p99_ms: float
    target_error_rate: float


@dataclass(frozen=True)
class Step:
    rate: float
    reason: Reason

    @property
    def direction(self) -> Literal["down", "up", "hold"]:
        if self.reason in ("p99_over_target", "errors_over_target"):
            return "down"
        return "up" if self.reason == "rate_limited_and_healthy" else "hold"


def _clamp(rate: float, targets: RateTargets) -> float:
    return max(targets.rate_min_per_s, min(targets.rate_max_per_s, rate))


def next_rate(law: RateLaw, rate: float, targets: RateTargets, health: HealthWindow, rate_limited: bool) -> Step:
    """One step of the law from the current ``rate`` (always within the bounds afterwards)."""
    rate = _clamp(rate, targets)
    if health.requests < law.min_requests:
        return Step(rate, "too_few_requests")
    if health.p99_ms > targets.target_p99_ms or health.error_rate > targets.target_error_rate:
        reason: Reason = "p99_over_target" if health.p99_ms > targets.target_p99_ms else "errors_over_target"
        if rate <= targets.rate_min_per_s:
            return Step(rate, "at_min")
        return Step(_clamp(round(rate * law.decrease_factor, 3), targets), reason)
    if not rate_limited:
        return Step(rate, "not_rate_limited")
    if rate >= targets.rate_max_per_s:
        return Step(rate, "at_max")
    step = max(law.min_step_per_s, law.increase_fraction * targets.rate_max_per_s)
    return Step(_clamp(round(rate + step, 3), targets), "rate_limited_and_healthy")
