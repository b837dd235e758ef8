"""Admission tokens: the waiting room's signed "you may shop now" for one visitor.

An EdDSA JWT with ``aud`` "ticketing", ``sub`` the visitor id, ``room``, ``event_id``,
``jti`` and a short ``exp`` (the shopper session TTL). Minted by the waiting room when a
visitor is admitted; required by ticketing (``X-Admission-Token``) for holds and
purchases on a gated event. Verified with the shared key ring (public keys also at
``/.well-known/jwks.json``).
"""

from __future__ import annotations

import time
import uuid

import msgspec

from stagedoor.errors import Forbidden
from stagedoor.keys import InvalidToken, KeyRing

ADMISSION_AUDIENCE = "ticketing"


class AdmissionClaims(msgspec.Struct, frozen=True, kw_only=True):
    visitor_id: str
    room: str
    event_id: str
    jti: str
    exp: int


class AdmissionRequired(Forbidden):
    code = "admission-required"
    title = "A valid admission token for this event is required"


def mint_admission_token(keyring: KeyRing, *, visitor_id: str, room: str, event_id: str,
                         ttl_s: int, now: float | None = None) -> tuple[str, AdmissionClaims]:
    now = time.time() if now is None else now
    claims = AdmissionClaims(visitor_id=visitor_id, room=room, event_id=event_id,
                             jti=uuid.uuid4().hex, exp=int(now) + int(ttl_s))
    token = keyring.sign({
        "aud": ADMISSION_AUDIENCE, "sub": visitor_id, "room": room, "event_id": event_id,
        "jti": claims.jti, "iat": int(now), "exp": claims.exp,
    })
    return token, claims


def verify_admission_token(keyring: KeyRing, token: str | None, event_id: str,
                           now: float | None = None) -> AdmissionClaims:
    """Claims of a valid admission token for ``event_id``; AdmissionRequired (403) otherwise."""
    if not token:
        raise AdmissionRequired("this event is gated by a waiting room: send X-Admission-Token")
    try:
        claims = keyring.verify(token, ADMISSION_AUDIENCE, now=now)
    except InvalidToken as exc:
        raise AdmissionRequired(f"admission token rejected: {exc.detail}") from None
    if str(claims.get("event_id")) != str(event_id):
        raise AdmissionRequired("admission token is for another event")
    if not claims.get("room") or not claims.get("jti"):
        raise AdmissionRequired("admission token lacks room or jti")
    return AdmissionClaims(visitor_id=str(claims["sub"]), room=str(claims["room"]), event_id=str(claims["event_id"]),
                           jti=str(claims["jti"]), exp=int(claims["exp"]))
