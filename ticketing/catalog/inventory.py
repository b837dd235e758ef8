"""The holdable inventory's lifecycle: load it into Redis when an event goes on sale, and
rebuild it from PostgreSQL when Redis lost it (flush, restart without persistence, or a
restart from an older snapshot, detected by the worker through Redis's run_id).

PostgreSQL is the truth of what is sold; a rebuild marks those seats sold, every other
seat free (holds in flight are lost), and general-admission counters capacity - sold.
PostgreSQL is also the record of which waiting room gates the event: the load writes that
link in the same Lua script as the inventory meta (lua/load_inventory.lua), so a hold script
never sees a (re)loaded inventory without its gate, whatever Redis lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from stagedoor.settings import Settings
from ticketing.catalog.seat_map_cache import SeatMapCache
from ticketing.catalog.store import EventStore
from ticketing.catalog.types import SeatMapOut
from ticketing.holds.errors import EventNotOnSale, InventoryUnavailable
from ticketing.holds.store import HoldStore
from ticketing.holds.types import InventoryMeta, StagedTier
from ticketing.ids import EventNotFound

logger = logging.getLogger(__name__)

SELLABLE = ("on_sale", "sold_out")
REBUILD_LOCK_MS = 60_000
REBUILD_WAIT_S = 15.0


class Inventory:
    def __init__(self, events: EventStore, holds: HoldStore, settings: Settings) -> None:
        self.events = events
        self.holds = holds
        self.settings = settings
        self.seat_maps: SeatMapCache[SeatMapOut] = SeatMapCache(settings.seat_map_cache_ms)

    async def load_event(self, event_id: int | str) -> bool:
        """(Re)load the event's holdable state from PostgreSQL. False when it is not sellable.

        Drops holds in flight: callers are going on sale (no holds yet) or rebuilding."""
        event = await self.events.get(int(event_id))
        if event is None or event.status not in SELLABLE:
            return False
        sold_seats, sold_ga = await self.events.sold(event.id)
        seats = [(r["id"], r["tier_code"], r["id"] in sold_seats) for r in await self.events.seat_tiers(event.id)]
        tiers = [StagedTier(code=t.code, price=t.price, capacity=t.quantity or 0, sold=sold_ga.get(t.code, 0),
                            general_admission=t.quantity is not None) for t in event.tiers]
        room = await self.events.gating_room(event.id)
        ttl_s = event.hold_ttl_s or self.settings.hold_ttl_s
        meta = InventoryMeta(status=event.status, currency=event.currency,
                             max_per_order=event.max_tickets_per_order, hold_ttl_ms=ttl_s * 1000)
        await self.holds.load(str(event.id), meta, tiers, seats, generation=uuid.uuid4().hex, room=room)
        logger.info("inventory_loaded", extra={"event_id": event.id, "seats": len(seats),
                                               "sold_seats": len(sold_seats), "room": room})
        return True

    async def rebuild_event_inventory(self, event_id: int | str) -> bool:
        """Rebuild from PostgreSQL now, whatever Redis holds (one process at a time)."""
        ev = str(event_id)
        lock = self.holds.keys.inventory_rebuild_lock(ev)
        token = uuid.uuid4().hex
        redis = self.holds.redis
        deadline = asyncio.get_running_loop().time() + REBUILD_WAIT_S
        while not await redis.set(lock, token, nx=True, px=REBUILD_LOCK_MS):
            if asyncio.get_running_loop().time() > deadline:
                raise InventoryUnavailable("inventory rebuild in progress")
            await asyncio.sleep(0.05)
        try:
            return await self.load_event(ev)
        finally:
            if await redis.get(lock) == token.encode():
                await redis.delete(lock)

    async def ensure_loaded(self, event_id: str) -> None:
        """Make sure a sellable event's inventory is in Redis (rebuild if lost); raise otherwise.

        Several requests may find it missing at once: one rebuilds under the lock, the others
        wait for it and find it loaded."""
        if await self.holds.is_loaded(event_id):
            return
        event = await self.events.get(int(event_id))
        if event is None:
            raise EventNotFound(f"no event {event_id}")
        if event.status not in SELLABLE:
            raise EventNotOnSale(f"the event is {event.status}")
        ev = str(event_id)
        lock = self.holds.keys.inventory_rebuild_lock(ev)
        token = uuid.uuid4().hex
        redis = self.holds.redis
        deadline = asyncio.get_running_loop().time() + REBUILD_WAIT_S
        while True:
            if await redis.set(lock, token, nx=True, px=REBUILD_LOCK_MS):
                try:
                    if not await self.holds.is_loaded(ev):
                        logger.warning("inventory_rebuild", extra={"event_id": ev, "reason": "not_loaded"})
                        await self.load_event(ev)
                finally:
                    if await redis.get(lock) == token.encode():
                        await redis.delete(lock)
                return
            await asyncio.sleep(0.05)
            if await self.holds.is_loaded(ev):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise InventoryUnavailable("inventory rebuild in progress")
