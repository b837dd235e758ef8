"""A room's automatic admission rate in Redis: its settings and current rate as the config hash
holds them (rooms/store.py), and the one write of a control step (lua/set_auto_rate.lua)."""

from __future__ import annotations

from typing import Literal, cast

import msgspec

from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys

StepOutcome = Literal["applied", "stale_period", "changed", "not_auto"]


class RateConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What a control step needs of a room. ``raw_rate``: ``rate`` exactly as stored, the step's
    compare-and-set value."""

    auto: bool
    rate: float
    raw_rate: bytes
    rate_min_per_s: float
    rate_max_per_s: float
    target_p99_ms: float
    target_error_rate: float


class AutoRateStore:
    def __init__(self, calls: RedisCalls, keys: RedisKeys) -> None:
        self._calls = calls
        self._keys = keys

    async def config(self, room: str) -> RateConfig | None:
        """None for a room Redis does not have."""
        reply = await self._calls.command("HMGET", self._keys.room_config(room), "rate_mode", "rate", "rate_min",
                                          "rate_max", "p99_ms", "err_rate")
        mode, rate, lo, hi, p99, err = cast(list[bytes | None], reply)
        if rate is None:
            return None
        auto = mode == b"auto" and bool(lo) and bool(hi)
        return RateConfig(auto=auto, rate=float(rate), raw_rate=rate,
                          rate_min_per_s=float(lo) if auto and lo else 0.0,
                          rate_max_per_s=float(hi) if auto and hi else 0.0,
                          target_p99_ms=float(p99 or 1000), target_error_rate=float(err or 0.01))

    async def set_rate(self, room: str, period: int, expected: bytes, rate: float) -> StepOutcome:
        """Apply a step computed from ``expected`` in control period ``period`` (once per period)."""
        keys = [self._keys.room_config(room), self._keys.room_state(room)]
        reply = await self._calls.script("set_auto_rate", keys, [period, expected, repr(float(rate))])
        return cast(StepOutcome, reply[0].decode())
