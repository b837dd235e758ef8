"""Shopper sessions and the rooms gating events, as ticketing sees them.

Ticketing calls these with its app's ``CALLS`` and ``KEYS``:

- after a purchase commits: ``await finish_shopper(calls, keys, room, visitor_id, now_ms)``
  (the room is the admission token's ``room`` claim, the visitor its ``sub``), which ends the
  shopper session at once and frees its capacity for the next visitor in the queue;
- when the inventory runs out: ``await mark_sold_out(calls, keys, room, now_ms)``:
  admission stops and every waiting visitor's status reads ``sold_out`` from the next poll
  (open event streams within their room pulse, 0.25 s: waitingroom/sse_pulse.py);
- when the event is cancelled: ``await close_cancelled_event(calls, keys, event_id, now_ms)``:
  the room gating it is closed for good (status ``closed``, joins refused, admission stopped),
  reaching the streams the same way;
- after a hold placed with an admission: ``await chose(calls, keys, room, visitor_id, tickets, now_ms)``: the
  shopper's tickets are out of the free count, so they stop counting against it as "choosing"
  (stock-aware admission, lua/admit_batch.lua) and the next fan in the queue can be let in;
- when a sold-out event is back on sale (tickets came back and its waiting list was empty,
  docs/waitlist.md): ``await resume_sale(calls, keys, room, now_ms)`` clears the flag and
  admission resumes in queue order;
- before a hold or purchase: send ``active_session_command(keys, room, visitor_id)`` with the
  request's other reads and judge its reply with ``session_is_live(reply, now_ms)``: False once
  the visitor was evicted, finished or their session expired (the admission JWT alone stays
  valid until exp);
- which room gates an event: ``event_room_command`` / ``room_from_reply`` in a round trip of
  your own, or ``room_of_event`` / ``rooms_of_events``.
"""

from __future__ import annotations

import contextlib

from rooms.errors import RoomNotFound
from rooms.queue_store import QueueStore, active_session_command, session_is_live
from rooms.store import RoomStore
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys

__all__ = ["active_session_command", "chose", "close_cancelled_event", "event_room_command", "finish_shopper",
           "mark_sold_out", "resume_sale", "room_from_reply", "room_of_event", "rooms_of_events", "session_is_live"]


async def finish_shopper(calls: RedisCalls, keys: RedisKeys, room: str, visitor_id: str, now_ms: int) -> bool:
    """End an admitted visitor's shopper session; False when they had no live session."""
    return await QueueStore(calls, keys).finish(room, visitor_id, now_ms)


async def chose(calls: RedisCalls, keys: RedisKeys, room: str, visitor_id: str, tickets: int,
                now_ms: int) -> None:
    """The admitted visitor holds ``tickets`` now: they no longer count as choosing, and the room
    learns the tickets a hold takes and how long fans take to hold (lua/shopper_held.lua)."""
    await calls.script("shopper_held", [keys.room_choosing(room), keys.room_state(room)],
                       [visitor_id, tickets, now_ms])


async def mark_sold_out(calls: RedisCalls, keys: RedisKeys, room: str, now_ms: int) -> None:
    """The event sold out: admission stops, every waiting visitor's state becomes sold_out.
    A missing room is ignored (the event's room may have been deleted meanwhile)."""
    with contextlib.suppress(RoomNotFound):  # the script checks the room: one round trip
        await RoomStore(calls, keys).set_sold_out(room, True, now_ms)


async def close_cancelled_event(calls: RedisCalls, keys: RedisKeys, event_id: str, now_ms: int) -> str | None:
    """The event was cancelled: close the room gating it (idempotent); the room, None when the
    event is not gated. PostgreSQL says the same to every later copy of the room (the room's
    record reads its event's status: rooms/record_store.py), so no rebuild opens it again."""
    room = await room_of_event(calls, keys, event_id)
    if room is not None:
        await RoomStore(calls, keys).close_cancelled(room, event_id, now_ms)
    return room


async def resume_sale(calls: RedisCalls, keys: RedisKeys, room: str, now_ms: int) -> None:
    """The event is on sale again: the sold-out flag is cleared and admission resumes. A missing
    room is ignored."""
    with contextlib.suppress(RoomNotFound):
        await RoomStore(calls, keys).set_sold_out(room, False, now_ms)


def event_room_command(keys: RedisKeys, event_id: str) -> tuple[str, str]:
    """The read of the waiting room gating an event as one command, for a caller's own round trip;
    decode the reply with :func:`room_from_reply` (None: the event is not gated)."""
    return ("GET", keys.event_room(event_id))


def room_from_reply(reply: object) -> str | None:
    return reply.decode() if isinstance(reply, bytes) else (str(reply) if reply is not None else None)


async def room_of_event(calls: RedisCalls, keys: RedisKeys, event_id: str) -> str | None:
    """The waiting room gating the event, None when it is not gated."""
    return room_from_reply(await calls.command(*event_room_command(keys, event_id)))


async def rooms_of_events(calls: RedisCalls, keys: RedisKeys, event_ids: list[str]) -> list[str | None]:
    """The rooms gating these events, in order, in one round trip (one key per event slot: no MGET,
    so it works on a Cluster)."""
    if not event_ids:
        return []
    replies = await calls.commands(*(event_room_command(keys, event_id) for event_id in event_ids))
    return [room_from_reply(r) for r in replies]
