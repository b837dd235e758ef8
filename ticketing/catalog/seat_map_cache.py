"""Live seat maps, kept for a moment: in a flash sale every fan on an event page polls the same map.

A seat map costs an HGETALL of every seat and a struct per seat; at 2,000 seats and a few dozen
polls a second it was the slowest fan-facing call of the flash-sale benchmark on a busy host
(p99 363-666 ms). An entry is served while all of these hold:

- this process has finished no write to the event's inventory since the entry's Redis read
  (``HoldStore.version``: holds, releases, payments, sales, expiry sweeps, reloads);
- no hold shown in it has expired yet (a seat must turn free on time);
- it is younger than ``max_age_ms`` (STAGEDOOR_SEAT_MAP_CACHE_MS), which bounds what it can miss
  of the other processes' writes. 0 turns the cache off.

Only maps of events on sale or sold out are kept; those are public, so a hit answers without
reading the event from PostgreSQL (a cancel or an update in this process is an inventory write
and drops the entry; in another process it shows within ``max_age_ms`` like any write).

Holds stay all-or-nothing in Lua whatever a map shows: a seat shown free a moment too long gets
a 409 on hold, as a seat taken by someone else in the same second always could.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

MAX_EVENTS = 64


class SeatMapCache(Generic[T]):
    def __init__(self, max_age_ms: int) -> None:
        self.max_age_ms = max_age_ms
        self._entries: dict[int, tuple[int, int, T]] = {}  # event -> (version, valid until ms, map)

    def get(self, event_id: int, version: int, now_ms: int) -> T | None:
        entry = self._entries.get(event_id)
        if entry is None or entry[0] != version or now_ms >= entry[1]:
            return None
        return entry[2]

    def put(self, event_id: int, version: int, read_at_ms: int, earliest_expiry_ms: int | None, value: T) -> None:
        """``version``: the event's write count read *before* the Redis read of ``value``."""
        if self.max_age_ms <= 0:
            return
        valid_until = read_at_ms + self.max_age_ms
        if earliest_expiry_ms is not None:
            valid_until = min(valid_until, earliest_expiry_ms)
        if len(self._entries) >= MAX_EVENTS and event_id not in self._entries:
            self._entries.clear()
        self._entries[event_id] = (version, valid_until, value)
