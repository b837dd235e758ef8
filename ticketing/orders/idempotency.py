"""Idempotency-Key handling for purchases: replay the first answer, charge once.

Two layers:

- Redis (fast path, every request): ``SET key "p:<fingerprint>:<nonce>" NX EX`` claims the
  key while the purchase runs. A concurrent duplicate finds the claim and gets 409 +
  Retry-After (pretix's pattern) instead of a second charge; once the purchase commits the
  value becomes ``"d:<fingerprint>:<status>:<body>"`` and duplicates get the same answer.
- PostgreSQL (truth): the purchase statement inserts the idempotency record with the order,
  so a duplicate arriving after Redis lost its data still replays the committed answer
  (order_store.replay), and the record's primary key refuses a second commit.

Failures are not recorded here: the claim is dropped, and retrying with the same key runs
the purchase again. The charge is not keyed by the claim: the payments row written before
it (ticketing/payments/records.py) carries a gateway idempotency key derived from (user,
Idempotency-Key, hold), so that retry gets the charge an unanswered attempt made instead of
a second one. The claim's nonce names the attempt (free orders' charge ids, PaymentFailed).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Any, cast

import msgspec

from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from ticketing.holds.errors import redis_or_unavailable
from ticketing.orders.errors import IdempotencyKeyRequired, IdempotencyKeyReused, PurchaseInProgress

IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces


class Replay(msgspec.Struct, frozen=True):
    status: int
    body: bytes


class Claim(msgspec.Struct, frozen=True):
    redis_key: str
    key: str
    fingerprint: str
    nonce: str


def validate_key(raw: str | None) -> str:
    if raw is None or raw == "":
        raise IdempotencyKeyRequired("send an Idempotency-Key header (1-200 printable ASCII characters)")
    if not IDEMPOTENCY_KEY_RE.match(raw):
        raise IdempotencyKeyRequired("the Idempotency-Key must be 1-200 printable ASCII characters, no spaces",
                                     errors=[{"field": "Idempotency-Key", "message": "malformed"}])
    return raw


def fingerprint(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def check_replay(fp: str, stored_fp: str, status: int, body: bytes) -> Replay:
    if stored_fp != fp:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    return Replay(status, body)


class IdempotencyStore:
    def __init__(self, calls: RedisCalls, keys: RedisKeys, inflight_ttl_s: int, done_ttl_s: int) -> None:
        # claim and finish share the process's round trips with the hold scripts
        self.calls = calls
        self.redis = calls.redis
        self.keys = keys
        self.inflight_ttl_s = inflight_ttl_s
        self.done_ttl_s = done_ttl_s

    def _redis_key(self, user_id: str, key: str) -> str:
        return self.keys.purchase_idempotency(user_id, hashlib.sha256(key.encode()).hexdigest()[:32])

    async def claim(self, user_id: str, key: str, fp: str,
                    also: Sequence[tuple[Any, ...]] = ()) -> tuple[Claim | Replay, list[Any]]:
        """Claim the key for this request, or the stored answer; PurchaseInProgress if one runs.

        The same round trip runs the caller's ``also`` commands (their replies come second, in
        order): the purchase sends the reads it needs next with the claim, one round trip, not
        several."""
        redis_key = self._redis_key(user_id, key)
        nonce = secrets.token_hex(12)
        commands: tuple[tuple[Any, ...], ...] = (
            ("SET", redis_key, f"p:{fp}:{nonce}", "NX", "EX", self.inflight_ttl_s),
            ("GET", redis_key),
            *also,
        )
        with redis_or_unavailable("Redis is unavailable"):
            replies = await self.calls.commands(*commands)
        claimed, current, *extra = replies
        if claimed:
            return Claim(redis_key=redis_key, key=key, fingerprint=fp, nonce=nonce), extra
        value = current.decode() if isinstance(current, bytes) else str(current or "")
        if value.startswith("d:"):
            _, stored_fp, status, body = value.split(":", 3)
            return check_replay(fp, stored_fp, int(status), body.encode()), extra
        if value.startswith("p:") and value.split(":", 2)[1] != fp:
            raise IdempotencyKeyReused("this Idempotency-Key is in use by a different request")
        raise PurchaseInProgress("a purchase with this Idempotency-Key is in progress; retry shortly",
                                 retry_after_s=1)

    async def finish(self, claim: Claim, status: int, body: bytes) -> None:
        value = f"d:{claim.fingerprint}:{status}:".encode() + body
        await self.calls.command("SET", claim.redis_key, value, "EX", self.done_ttl_s)

    async def abandon(self, claim: Claim) -> None:
        """Drop our claim (the purchase failed) so the same key may be retried."""
        value = cast(bytes | None, await self.redis.get(claim.redis_key))  # bytes: replies are not decoded
        if value is not None and value.decode().endswith(":" + claim.nonce):
            await self.redis.delete(claim.redis_key)
