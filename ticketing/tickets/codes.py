"""Ticket codes: signed, unguessable, verifiable offline with the public key.

A code is a compact JWS (a JWT) signed with the shared Ed25519 key ring: claims ``sub``
(ticket id, a random UUID), ``eid`` (event id), ``aud`` "stagedoor-ticket" and a far
``exp``. Why this scheme:

- unforgeable without the private key and unguessable (128 random bits in the id plus a
  64-byte signature), yet a door scanner can verify it offline with the public keys the
  services publish as JWKS (``kid`` in the header picks the key, so rotation works);
- a standard format any JWT library reads; no shared secret (HMAC) has to be copied to
  scanners, which could then mint tickets;
- about 250 ASCII characters: a version 10-11 QR code, fine on a phone screen.

Check-in still asks PostgreSQL (a code is valid once); the signature only decides whether
a code is ours before any query runs (forged -> 404 with no database work).
"""

from __future__ import annotations

import uuid

import msgspec

from stagedoor.keys import InvalidToken, KeyRing

TICKET_AUDIENCE = "stagedoor-ticket"
MAX_CODE_LENGTH = 1024


class TicketClaims(msgspec.Struct, frozen=True):
    ticket_id: str
    event_id: str


def sign_ticket_code(keyring: KeyRing, ticket_id: str, event_id: str, expires_s: int) -> str:
    """The code printed on the ticket (Ed25519 is deterministic: same claims, same code)."""
    return keyring.sign({"aud": TICKET_AUDIENCE, "sub": ticket_id, "eid": str(event_id), "exp": expires_s},
                        typ="ticket+jwt")


def verify_ticket_code(keyring: KeyRing, code: str) -> TicketClaims | None:
    """The ticket a code names, or None when it is not a code we signed."""
    if not code or len(code) > MAX_CODE_LENGTH:
        return None
    try:
        claims = keyring.verify(code, TICKET_AUDIENCE)
    except InvalidToken:
        return None
    ticket_id, event_id = claims.get("sub"), claims.get("eid")
    try:
        uuid.UUID(str(ticket_id))
    except ValueError:
        return None
    if not isinstance(event_id, str) or not event_id.isdigit():
        return None
    return TicketClaims(ticket_id=str(ticket_id), event_id=event_id)
