"""Sell-out detection off the purchase's request path.

A purchase that may have sold the last tickets notes its event here (after its confirm-sold in
Redis, before its answer leaves). A task owned by the app wakes at once on a note and checks
every noted event: Redis counters first (no free and no held tickets), then PostgreSQL decides.
On a sell-out it marks the event sold out with one SoldOut outbox row (written by the caller
whose status change wins), writes ``sold_out`` into the inventory's meta (ordinary holds are then
refused: returned tickets go to the waiting list, docs/waitlist.md) and tells the waiting room
(``rooms.sessions.mark_sold_out``), which pushes it to every open stream of the room within its
room pulse (waitingroom/sse_pulse.py). Notes that
arrive during a check are checked right after it, so a crowd of purchases costs one Redis read
per event and round, and the last purchase's note is never left waiting for a timer. A check
that fails is retried after ``sold_out_check_interval_ms``.

The buyer's request does not wait for any of it. The worker runs a second watch, noted by the
hold sweeper for every event whose counters read nothing left (``consider``): if the ticketing
process died between the purchase's commit and its check, the worker still marks the event and
tells the room within a sweep (``hold_sweep_interval_s``); and once the SoldOut row exists, the
worker's ``admission`` bus group tells the room too (ticketing/consumers.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping

import msgspec

from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.holds.store import HoldStore
from ticketing.holds.types import TierCount
from ticketing.orders.store import OrderStore

logger = logging.getLogger(__name__)

SOLD_OUT_NAMESPACE = uuid.UUID("6d1b7c1e-6a56-4f43-9a0e-5f2b8d3c9a10")
_ENCODER = msgspec.json.Encoder()


def nothing_left(counts: Mapping[str, TierCount] | None) -> bool:
    """The inventory's counters say every ticket is sold (none free, none held)."""
    return counts is not None and all(c.free <= 0 and c.held <= 0 for c in counts.values())


class SoldOutWatch:
    """Events that sold tickets since the last check (event id -> its waiting room, if known)."""

    def __init__(self, interval_ms: int, *, holds: HoldStore, orders: OrderStore, admission: AdmissionHooks) -> None:
        self.interval_s = interval_ms / 1000
        self._holds = holds
        self._orders = orders
        self._admission = admission
        self._noted: dict[str, str | None] = {}
        self._wake = asyncio.Event()
        self._told: set[str] = set()  # events this watch found sold out and told the room about

    @property
    def noted(self) -> frozenset[str]:
        """The events waiting for their check."""
        return frozenset(self._noted)

    def note(self, event_id: str, room: str | None) -> None:
        self._noted[event_id] = room or self._noted.get(event_id)
        self._wake.set()

    def consider(self, event_id: str, counts: Mapping[str, TierCount] | None) -> None:
        """The worker's fallback (the hold sweeper's counters of each event it sweeps): note an
        event whose counters read nothing left unless this watch already told its room."""
        if counts is None:
            return
        if not nothing_left(counts):
            self._told.discard(event_id)  # tickets came back: a later sell-out is a new one
        elif event_id not in self._told:
            self.note(event_id, None)

    async def announce(self, event_id: str, room: str | None, now_ms: int) -> bool:
        """Mark the event sold out if it is; True when it is sold out."""
        if not nothing_left(await self._holds.tier_counts(event_id)):
            return False
        if not await self._orders.is_sold_out(int(event_id)):  # Redis thinks so; PostgreSQL decides
            return False
        # one row per sell-out (an event back on sale may sell out again); of concurrent callers only
        # the one whose status change wins writes its row
        outbox_id = str(uuid.uuid5(SOLD_OUT_NAMESPACE, f"sold-out:{event_id}:{now_ms}"))
        payload = _ENCODER.encode({"event_id": event_id, "at_ms": now_ms})
        if await self._orders.mark_sold_out(int(event_id), outbox_id, payload):
            logger.info("event_sold_out", extra={"event_id": event_id})
            # The inventory says so too: hold scripts then refuse every ordinary hold, so tickets that
            # come back go to the waiting list (docs/waitlist.md), not to whoever asks first.
            await self._holds.update_meta(event_id, {"status": "sold_out"})
        room = room or await self._admission.room_of_event(event_id)
        if room:
            await self._admission.mark_sold_out(room, now_ms)
        self._told.add(event_id)
        return True

    async def check_once(self, now_ms: int) -> int:
        """Check every noted event; returns how many checks failed (noted again for a retry)."""
        noted, self._noted = self._noted, {}
        failed = 0
        for event_id, room in noted.items():
            try:
                await self.announce(event_id, room, now_ms)
            except Exception:
                logger.exception("sold_out_check_failed", extra={"event_id": event_id})
                failed += 1
                self._noted[event_id] = room or self._noted.get(event_id)  # try again after the interval
        return failed

    async def run(self, now_ms: Callable[[], int]) -> None:
        """The app's background loop (started and cancelled by ticketing.orders.routes.purchases_ctx
        and by the worker)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if await self.check_once(now_ms()):
                await asyncio.sleep(self.interval_s)
                self._wake.set()
