"""The event's stock as admission sees it (docs/admission.md "Admission and the stock").

The admission tick needs the event's free tickets, which live in the inventory's slot
(``{ev:<id>}``), not the room's (``{room:<r>}``): on a Redis Cluster they may be on different
masters, and no script may touch both. So the controller reads the stock first (one
``event_stock`` call on the event's slot) and passes it to ``admit_batch`` on the room's slot.

Between the two calls only holds can lower the free count, and only shoppers already in the
active set can hold on a gated event: they are counted by the bound already. What the read
misses is at most the holds of those shoppers in one round trip, never a fan let in twice.
"""

from __future__ import annotations

import msgspec

from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys

SELLING = "on_sale"


class EventStock(msgspec.Struct, frozen=True):
    status: str
    free: int  # neither held nor sold
    held: int  # in shoppers' holds (an expired hold until it is reclaimed)

    @property
    def admissible(self) -> int:
        """Free tickets a new shopper could hold: none unless the event is on sale (a sold-out
        event's returned tickets are offered to its waiting list, not to the queue)."""
        return self.free if self.status == SELLING else 0


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def event_stock(calls: RedisCalls, keys: RedisKeys, event_id: str) -> EventStock | None:
    """The event's free and held tickets; None when its inventory is not in Redis."""
    reply = await calls.script("event_stock", [keys.inventory_meta(event_id), keys.inventory_tiers(event_id)], [])
    if _s(reply[0]) != "ok":
        return None
    return EventStock(status=_s(reply[1]), free=int(reply[2]), held=int(reply[3]))
