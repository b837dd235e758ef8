"""Sell-out detection off the purchase's request path.

A purchase that may have sold the last tickets notes its event here; a task owned by the
app checks noted events every ``sold_out_check_interval_ms`` (Redis counters first: no free
and no held tickets; then PostgreSQL decides), and on a sell-out marks the event sold out
with one SoldOut outbox row (written by the caller whose status change wins), writes ``sold_out`` into the
inventory's meta (ordinary holds are then refused: returned tickets go to the waiting list) and
tells the waiting room (``rooms.sessions.mark_sold_out``). The buyer's request does not wait for any of it,
and the queue hears of the sell-out within the interval plus one check.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import msgspec

from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.holds.store import HoldStore
from ticketing.orders.store import OrderStore

logger = logging.getLogger(__name__)

SOLD_OUT_NAMESPACE = uuid.UUID("6d1b7c1e-6a56-4f43-9a0e-5f2b8d3c9a10")
_ENCODER = msgspec.json.Encoder()


class SoldOutWatch:
    """Events that sold tickets since the last check (event id -> its waiting room, if known)."""

    def __init__(self, interval_ms: int, *, holds: HoldStore, orders: OrderStore, admission: AdmissionHooks) -> None:
        self.interval_s = interval_ms / 1000
        self._holds = holds
        self._orders = orders
        self._admission = admission
        self._noted: dict[str, str | None] = {}

    def note(self, event_id: str, room: str | None) -> None:
        self._noted[event_id] = room or self._noted.get(event_id)

    async def announce(self, event_id: str, room: str | None, now_ms: int) -> bool:
        """Mark the event sold out if it is; True when it is sold out."""
        counts = await self._holds.tier_counts(event_id)
        if counts is None or any(c.free > 0 or c.held > 0 for c in counts.values()):
            return False
        if not await self._orders.is_sold_out(int(event_id)):  # Redis thinks so; PostgreSQL decides
            return False
        # one row per sell-out (an event back on sale may sell out again); of concurrent callers only
        # the one whose status change wins writes its row
        outbox_id = str(uuid.uuid5(SOLD_OUT_NAMESPACE, f"sold-out:{event_id}:{now_ms}"))
        payload = _ENCODER.encode({"event_id": event_id, "at_ms": now_ms})
        if await self._orders.mark_sold_out(int(event_id), outbox_id, payload):
            # The inventory says so too: hold scripts then refuse every ordinary hold, so tickets that
            # come back go to the waiting list (docs/waitlist.md), not to whoever asks first.
            await self._holds.update_meta(event_id, {"status": "sold_out"})
            logger.info("event_sold_out", extra={"event_id": event_id})
        room = room or await self._admission.room_of_event(event_id)
        if room:
            await self._admission.mark_sold_out(room, now_ms)
        return True

    async def check_once(self, now_ms: int) -> None:
        noted, self._noted = self._noted, {}
        for event_id, room in noted.items():
            try:
                await self.announce(event_id, room, now_ms)
            except Exception:
                logger.exception("sold_out_check_failed", extra={"event_id": event_id})
                self.note(event_id, room)  # try again next round

    async def run(self, now_ms: Callable[[], int]) -> None:
        """The app's background loop (started and cancelled by ticketing.orders.routes.purchases_ctx)."""
        while True:
            await asyncio.sleep(self.interval_s)
            if self._noted:
                await self.check_once(now_ms())
