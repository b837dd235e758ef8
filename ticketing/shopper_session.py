"""Is the admitted visitor still a shopper? Ticketing's check against the waiting room.

An admission token is a signed JWT that stays valid until its ``exp``; the waiting room can
end the shopper session earlier (an SRE evicts the visitor, the visitor bought and finished,
the session TTL ran out). Holds and purchases on a gated event therefore also ask the room's
``active`` sorted set (``admission.sessions.is_shopper_active``: one ZSCORE) and refuse with
``403 /problems/shopper-session-ended`` once the session is over, so an eviction takes effect
at the visitor's next request (no cache: the answer is at most one Redis round trip old).
"""

from __future__ import annotations

from typing import Any

from stagedoor.admission_tokens import AdmissionClaims
from stagedoor.errors import Forbidden


class ShopperSessionEnded(Forbidden):
    code = "shopper-session-ended"
    title = "Your shopping session has ended"


OPENAPI_403 = ("Forbidden: no valid X-Admission-Token for this gated event (/problems/admission-required), "
               "the shopper session behind it ended: evicted, finished or expired "
               "(/problems/shopper-session-ended), or not allowed")


def session_ended(claims: AdmissionClaims) -> ShopperSessionEnded:
    return ShopperSessionEnded(
        f"your shopping session in waiting room {claims.room[:64]!r} has ended (evicted, finished or expired); "
        "join the queue again")


async def is_active(calls: Any, keys: Any, claims: AdmissionClaims, now_ms: int) -> bool:
    """True while the token's visitor holds a live shopper session in the token's room. True as
    well when the admission package is not installed (the token's own ``exp`` then governs).
    ``calls``: the app's RedisCalls (the ZSCORE shares the process's round trips)."""
    try:
        from admission import sessions
    except ImportError:  # pragma: no cover - ticketing deployed without the waiting-room packages
        return True
    command = sessions.active_session_command(keys, claims.room, claims.visitor_id)
    reply = await calls.command(*command)
    return sessions.session_is_live(reply, now_ms)
