"""Queue tokens: the waiting room's HMAC-signed "this visitor holds a place in this room".

    q2.<visitor_id>.<room>.<issued_at_s>.<kid>.<base64url HMAC-SHA256>

The MAC covers everything before it, under a key derived from a queue token secret with a
domain label (so a queue token is never mistaken for a proof-of-work challenge or anything
else signed with the same secret). ``kid`` names the secret: the first 8 base64url characters
of an HMAC of a fixed label under it (48 bits, enough to tell a handful of secrets apart,
nothing to learn the secret from).

Rotation (``QueueTokenKeys``): ``queue_token_secret`` signs every new token;
``queue_token_previous_secrets`` still verify the tokens they signed, so a rotation does not
send the queue to the back. Verification looks the kid up (an unknown kid is refused before
any MAC is computed) and computes one MAC, as before rotation existed. Tokens from before key
ids (``q1``, no kid) verify under the signing secret only.

Verification is constant time and refuses, as ``InvalidQueueToken`` (401): a malformed
token, an unknown key id, a bad MAC, a token for another room, and a token older than
``ttl_s``. Evicted visitors are refused later, against Redis.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from functools import lru_cache

import msgspec

from stagedoor.errors import Unauthorized
from stagedoor.settings import Settings, SettingsError, split_secrets

VERSION = "q2"
MAX_TOKEN_CHARS = 256
KID_CHARS = 8
_KEY_LABEL = b"stagedoor/queue-token/v1"
_KID_LABEL = b"stagedoor/queue-token/kid/v1"
# visitor ids are "<seq base36>_<suffix>", rooms "[a-z0-9][a-z0-9-]*": neither contains a dot.
_TOKEN_RE = re.compile(r"^q([12])\.([0-9a-z]{1,13}_[A-Za-z0-9]{4,32})\.([a-z0-9][a-z0-9-]{0,62})\.([0-9]{1,12})\."
                       r"(?:([A-Za-z0-9_-]{8})\.)?([A-Za-z0-9_-]{43})$")


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


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_id(secret: str) -> str:
    """The public name of a queue token secret, written in every token it signs."""
    return _b64(hmac.new(secret.encode(), _KID_LABEL, hashlib.sha256).digest())[:KID_CHARS]


class QueueTokenKeys:
    """The secret that signs new queue tokens and the previous ones that still verify, each
    under its key id, with its HMAC pads computed once."""

    __slots__ = ("_by_kid", "_signing", "kid")

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        self.kid = key_id(secret)
        self._signing = _HmacSha256(derive_key(secret))
        self._by_kid = {self.kid: self._signing}
        for old in previous:
            kid = key_id(old)
            if kid in self._by_kid:  # the same secret twice (settings refuse it) or a 2**-48 accident
                raise SettingsError("two queue token secrets share a key id: STAGEDOOR_QUEUE_TOKEN_SECRET and "
                                    "STAGEDOOR_QUEUE_TOKEN_PREVIOUS_SECRETS must all differ")
            self._by_kid[kid] = _HmacSha256(derive_key(old))

    @property
    def kids(self) -> tuple[str, ...]:
        """Every key id that verifies, the signing one first."""
        return tuple(self._by_kid)

    def sign(self, body: str) -> str:
        """The MAC of ``body`` under the signing secret."""
        return _b64(self._signing.digest(body.encode()))

    def mac(self, body: str, kid: str | None) -> str | None:
        """The MAC of ``body`` under ``kid``'s secret (a legacy token's: the signing one when
        None); None for a kid no configured secret has."""
        signer = self._signing if kid is None else self._by_kid.get(kid)
        return None if signer is None else _b64(signer.digest(body.encode()))


@lru_cache(maxsize=8)
def queue_token_keys(secret: str, previous: tuple[str, ...] = ()) -> QueueTokenKeys:
    return QueueTokenKeys(secret, previous)


def keys_from_settings(settings: Settings) -> QueueTokenKeys:
    """The waiting room's keys: ``queue_token_secret`` signs, ``queue_token_previous_secrets`` verify."""
    if not settings.queue_token_secret:
        raise SettingsError("the waiting room needs STAGEDOOR_QUEUE_TOKEN_SECRET")
    return queue_token_keys(settings.queue_token_secret, split_secrets(settings.queue_token_previous_secrets))


def _keys(keys: QueueTokenKeys | str) -> QueueTokenKeys:
    return queue_token_keys(keys) if isinstance(keys, str) else keys  # a lone secret: nothing to rotate from


def mint_queue_token(keys: QueueTokenKeys | str, *, visitor_id: str, room: str, now_s: int) -> str:
    """A token signed by the signing secret (``keys`` may be a lone secret)."""
    keys = _keys(keys)
    body = f"{VERSION}.{visitor_id}.{room}.{int(now_s)}.{keys.kid}"
    return f"{body}.{keys.sign(body)}"


def verify_queue_token(keys: QueueTokenKeys | str, token: str | None, *, room: str, now_s: int,
                       ttl_s: int) -> QueueTokenClaims:
    """The claims of a valid token for ``room``; InvalidQueueToken otherwise."""
    if not token:
        raise InvalidQueueToken("a queue token is required (cookie or Authorization: Bearer)")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidQueueToken("queue token too long")
    match = _TOKEN_RE.match(token)
    if not match:
        raise InvalidQueueToken("malformed queue token")
    version, visitor_id, token_room, issued, kid, mac = match.groups()
    if (version == "2") != (kid is not None):
        raise InvalidQueueToken("malformed queue token")
    expected = _keys(keys).mac(token[: -len(mac) - 1], kid)
    if expected is None:
        raise InvalidQueueToken("queue token signed with an unknown or retired key")
    if not hmac.compare_digest(expected, mac):
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
