"""What ticketing tells admission: a shopper finished, the event sold out.

Ticketing calls these with its app's ``CALLS`` and ``KEYS``:

- after a purchase commits: ``await finish_shopper(calls, keys, room, visitor_id, now_ms)``
  (the room is the admission token's ``room`` claim, the visitor its ``sub``), which ends the
  shopper session at once and frees its capacity for the next visitor in the queue;
- when the inventory runs out: ``await mark_sold_out(calls, keys, room, now_ms)``:
  admission stops and every waiting visitor's status reads ``sold_out`` from the next poll
  (SSE streams poll every 0.5 s, so within 1 s);
- before a hold or purchase: ``await is_shopper_active(...)`` is False once the visitor was
  evicted, finished or their session expired (the admission JWT alone stays valid until exp);
  or send ``active_session_command(keys, room, visitor_id)`` in a pipeline of your own and read
  its reply with ``session_is_live(reply, now_ms)`` (no round trip of its own).
"""

from __future__ import annotations

from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from waitingroom.queue_store import QueueStore, active_session_command, session_is_live

__all__ = ["active_session_command", "finish_shopper", "is_shopper_active", "mark_sold_out", "session_is_live"]
from waitingroom.rooms import RoomStore


async def finish_shopper(calls: RedisCalls, keys: RedisKeys, room: str, visitor_id: str, now_ms: int) -> bool:
    """End an admitted visitor's shopper session; False when they had no live session."""
    return await QueueStore(calls, keys).finish(room, visitor_id, now_ms)


async def mark_sold_out(calls: RedisCalls, keys: RedisKeys, room: str, now_ms: int) -> None:
    """The event sold out: admission stops, every waiting visitor's state becomes sold_out.
    A missing room is ignored (the event's room may have been deleted meanwhile)."""
    store = RoomStore(calls, keys)
    if await store.get(room) is not None:
        await store.set_sold_out(room, True, now_ms)


async def is_shopper_active(calls: RedisCalls, keys: RedisKeys, room: str, visitor_id: str, now_ms: int) -> bool:
    """True while the visitor holds a live shopper session in ``room``."""
    return await QueueStore(calls, keys).is_active(room, visitor_id, now_ms)
