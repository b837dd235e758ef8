"""The clock domain code reads once per operation (``now_ms``) and passes down.

Injected, so expiry tests move time instead of sleeping (:class:`ManualClock`).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock tests move by hand (expiry tests move time instead of sleeping)."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.value = now_ms

    def now_ms(self) -> int:
        return self.value

    def advance(self, ms: int) -> None:
        self.value += ms
