"""Ticketing's link to the waiting room: is the admitted visitor still a shopper, and what a
purchase or a sell-out tells the room (AdmissionHooks, and the bus fallback AdmissionSignals).

An admission token is a signed JWT that stays valid until its ``exp``; the waiting room can
end the shopper session earlier (an SRE evicts the visitor, the visitor bought and finished,
the session TTL ran out). Holds and purchases on a gated event therefore also ask the room's
``active`` sorted set (``rooms.sessions.active_session_command``: one ZSCORE) and refuse with
``403 /problems/shopper-session-ended`` once the session is over, so an eviction takes effect
at the visitor's next request (no cache: the answer is at most one Redis round trip old).
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from rooms import sessions
from stagedoor.admission_tokens import AdmissionClaims
from stagedoor.bus_envelope import Envelope
from stagedoor.errors import Forbidden
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys

logger = logging.getLogger(__name__)


class ShopperSessionEnded(Forbidden):
    code = "shopper-session-ended"
    title = "Your shopping session has ended"


OPENAPI_403 = ("Forbidden: no valid X-Admission-Token for this gated event (/problems/admission-required), "
               "the shopper session behind it ended: evicted, finished or expired "
               "(/problems/shopper-session-ended), or not allowed")
OPENAPI_403_HOLD = (OPENAPI_403 + "; or the admission token is bound to another account "
                    "(/problems/admission-in-use: an admission is one fan's)")


async def chose(calls: RedisCalls, keys: RedisKeys, claims: AdmissionClaims, tickets: int, now_ms: int) -> None:
    """After a hold placed with the admission: its shopper stops counting as choosing against the
    event's free tickets (rooms.sessions.chose). Best effort: should Redis refuse, the shopper
    counts a little longer (the room's stock_reserve_s at most) and admission is the slower for it."""
    try:
        await sessions.chose(calls, keys, claims.room, claims.visitor_id, tickets, now_ms)
    except RedisError as exc:
        logger.warning("shopper_chose_not_recorded", extra={"room": claims.room, "error": str(exc)})


def session_ended(claims: AdmissionClaims) -> ShopperSessionEnded:
    return ShopperSessionEnded(
        f"your shopping session in waiting room {claims.room[:64]!r} has ended (evicted, finished or expired); "
        "join the queue again")


async def is_active(calls: RedisCalls, keys: RedisKeys, claims: AdmissionClaims, now_ms: int) -> bool:
    """True while the token's visitor holds a live shopper session in the token's room (one
    ZSCORE, sharing the process's round trips)."""
    command = sessions.active_session_command(keys, claims.room, claims.visitor_id)
    return sessions.session_is_live(await calls.command(*command), now_ms)


class AdmissionHooks:
    """Tells the waiting room about purchases (rooms.sessions): a shopper finished, the event
    sold out; and checks that an admission token's shopper session is still live."""

    def __init__(self, calls: RedisCalls, keys: RedisKeys) -> None:
        self._calls = calls
        self._keys = keys

    async def finish_shopper(self, room: str, visitor_id: str, now_ms: int) -> None:
        await sessions.finish_shopper(self._calls, self._keys, room, visitor_id, now_ms)

    async def mark_sold_out(self, room: str, now_ms: int) -> None:
        await sessions.mark_sold_out(self._calls, self._keys, room, now_ms)

    async def close_cancelled_event(self, event_id: str, now_ms: int) -> str | None:
        """The event was cancelled: close its room for good (None: the event is not gated)."""
        return await sessions.close_cancelled_event(self._calls, self._keys, event_id, now_ms)

    async def resume_sale(self, room: str, now_ms: int) -> None:
        await sessions.resume_sale(self._calls, self._keys, room, now_ms)

    def event_room_command(self, event_id: str) -> tuple[str, str]:
        """The read of the room gating the event, for the Idempotency-Key claim's round trip."""
        return sessions.event_room_command(self._keys, event_id)

    async def room_of_event(self, event_id: str) -> str | None:
        return await sessions.room_of_event(self._calls, self._keys, event_id)

    def session_command(self, admission: AdmissionClaims) -> tuple[str, str, str]:
        """The shopper-session check as one command for the Idempotency-Key claim's round trip."""
        return sessions.active_session_command(self._keys, admission.room, admission.visitor_id)

    def require_active(self, admission: AdmissionClaims, reply: bytes | str | float | None, now_ms: int) -> None:
        """403 shopper-session-ended once the token's session is over (evicted, finished, expired);
        ``reply`` is what :meth:`session_command` answered."""
        if not sessions.session_is_live(reply, now_ms):
            raise session_ended(admission)


class AdmissionSignals:
    """Handler of the worker's ``admission`` bus group: SoldOut stops the event's waiting room,
    EventCancelled closes it, ShopperFinished ends the shopper session (all idempotent; the
    purchase and cancellation paths already do each at once, the bus is the durable fallback)."""

    event_types = frozenset({"SoldOut", "EventCancelled", "ShopperFinished"})

    def __init__(self, hooks: AdmissionHooks) -> None:
        self.hooks = hooks

    async def __call__(self, env: Envelope) -> None:
        now_ms = int(time.time() * 1000)
        if env.event_type == "SoldOut":
            room = await self.hooks.room_of_event(str(env.payload["event_id"]))
            if room is not None:
                await self.hooks.mark_sold_out(room, now_ms)
        elif env.event_type == "EventCancelled":
            await self.hooks.close_cancelled_event(str(env.payload["event_id"]), now_ms)
        elif env.event_type == "ShopperFinished":
            await self.hooks.finish_shopper(str(env.payload["room"]), str(env.payload["visitor_id"]), now_ms)
