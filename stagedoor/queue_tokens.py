"""Queue tokens: the waiting room's HMAC-signed "this visitor holds a place in this room".

    q1.<visitor_id>.<room>.<issued_at_s>.<base64url HMAC-SHA256>

The MAC covers everything before it, under a key derived from ``queue_token_secret`` with a
domain label (so a queue token is never mistaken for a proof-of-work challenge or anything
else signed with the same secret). Verification is constant time and refuses, as
``InvalidQueueToken`` (401): a malformed token, a bad MAC, a token for another room, and a
token older than ``ttl_s``. Evicted visitors are refused later, against Redis.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from functools import lru_cache

import msgspec

from stagedoor.errors import Unauthorized

VERSION = "q1"
MAX_TOKEN_CHARS = 256
_KEY_LABEL = b"stagedoor/queue-token/v1"
# visitor ids are "<seq base36>_<suffix>", rooms "[a-z0-9][a-z0-9-]*": neither contains a dot.
_TOKEN_RE = re.compile(r"^q1\.([0-9a-z]{1,13}_[A-Za-z0-9]{4,32})\.([a-z0-9][a-z0-9-]{0,62})\.([0-9]{1,12})\."
                       r"([A-Za-z0-9_-]{43})$")


class InvalidQueueToken(Unauthorized):
    code = "invalid-queue-token"
    title = "Missing or invalid queue token"


class QueueTokenClaims(msgspec.Struct, frozen=True):
    visitor_id: str
    room: str
    issued_at_s: int


@lru_cache(maxsize=8)
def derive_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) under one fixed key, with the key's inner and outer pad hashed once:
    a MAC is then two hash copies and updates. OpenSSL 3's one-shot HMAC sets the key up anew on
    every call, which cost more than the rest of a join's token work. Tested against ``hmac``."""

    BLOCK = 64  # SHA-256's block size in bytes
    IPAD = bytes(x ^ 0x36 for x in range(256))
    OPAD = bytes(x ^ 0x5C for x in range(256))

    def __init__(self, key: bytes) -> None:
        if len(key) > self.BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(self.BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(self.IPAD))
        self._outer = hashlib.sha256(key.translate(self.OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@lru_cache(maxsize=8)
def _signer(secret: str) -> _HmacSha256:
    return _HmacSha256(derive_key(secret))


def _mac(secret: str, body: str) -> str:
    return base64.urlsafe_b64encode(_signer(secret).digest(body.encode())).rstrip(b"=").decode()


def mint_queue_token(secret: str, *, visitor_id: str, room: str, now_s: int) -> str:
    body = f"{VERSION}.{visitor_id}.{room}.{int(now_s)}"
    return f"{body}.{_mac(secret, body)}"


def verify_queue_token(secret: str, token: str | None, *, room: str, now_s: int, ttl_s: int) -> QueueTokenClaims:
    """The claims of a valid token for ``room``; InvalidQueueToken otherwise."""
    if not token:
        raise InvalidQueueToken("a queue token is required (cookie or Authorization: Bearer)")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidQueueToken("queue token too long")
    match = _TOKEN_RE.match(token)
    if not match:
        raise InvalidQueueToken("malformed queue token")
    visitor_id, token_room, issued, mac = match.groups()
    body = token[: -len(mac) - 1]
    if not hmac.compare_digest(_mac(secret, body), mac):
        raise InvalidQueueToken("queue token signature does not verify")
    if token_room != room:
        raise InvalidQueueToken("queue token is for another room")
    issued_at = int(issued)
    if issued_at > now_s + 60:
        raise InvalidQueueToken("queue token issued in the future")
    if now_s - issued_at > ttl_s:
        raise InvalidQueueToken("queue token expired")
    return QueueTokenClaims(visitor_id, token_room, issued_at)


def visitor_seq(visitor_id: str) -> int:
    """The arrival sequence number encoded in a visitor id (its heartbeat bit index)."""
    return int(visitor_id.partition("_")[0], 36)
