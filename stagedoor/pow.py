"""Proof of work on join: hashcash-style SHA-256 challenges, stateless to issue, single use.

Issuing costs the server one HMAC and no Redis write (so ``GET /api/rooms/{room}/pow``
cannot be used to fill Redis). A challenge is a signed string

    v1.<base64url(json {r: room, s: subject, d: difficulty, e: expires_ms, i: challenge_id})>.<base64url(mac)>

with the MAC an HMAC-SHA256 under a key derived from ``queue_token_secret`` (domain-separated,
so a challenge is never mistaken for a queue token). ``subject`` is the visitor id when the
caller already has one, else a fresh pre-join nonce the waiting room may adopt as the new
visitor id. The client finds a decimal ``nonce`` such that

    SHA-256(challenge + ":" + nonce)   starts with ``difficulty`` zero bits

(2**difficulty hashes expected; templates/static/pow.js does it with Web Crypto).

Verification, cheapest check first so forged input never reaches Redis: shape, MAC
(``hmac.compare_digest``, constant time), room, subject, expiry, difficulty (at least the
room's current one), the work itself, and last single use: ``SET <pow_spent key> NX PX``
in the room's hash-tagged keyspace, expiring with the challenge. Every refusal is a
``PowRefused`` (403) with its own problem type.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from stagedoor.errors import DependencyUnavailable, Forbidden, ValidationFailed
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import SettingsError
from stagedoor.web import KEYS, METRICS, REDIS, SETTINGS

logger = logging.getLogger(__name__)

ALGORITHM = "sha256-leading-zero-bits"
VERSION = "v1"
MAX_DIFFICULTY = 32  # 4 billion hashes expected: far beyond anything a phone can do
RECOMMENDED_DIFFICULTY = 15  # about a second on a phone-class CPU with Web Crypto (docs/security.md cost model)
MAX_CHALLENGE_CHARS = 512
_KEY_LABEL = b"stagedoor/pow/v1"
_CHALLENGE_RE = re.compile(r"^v1\.([A-Za-z0-9_-]{1,400})\.([A-Za-z0-9_-]{43})$")


# ---------------------------------------------------------------- wire types

class PowChallenge(msgspec.Struct, frozen=True, kw_only=True):
    """What ``GET /api/rooms/{room}/pow`` returns."""

    challenge: str
    difficulty: int
    algorithm: str = ALGORITHM
    expires_at: str
    subject: str


class PowSolution(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``pow`` member of a join body."""

    challenge: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CHALLENGE_CHARS)]
    nonce: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,16}$")]


class PowProof(msgspec.Struct, frozen=True, kw_only=True):
    """A verified, now spent, solution."""

    room: str
    subject: str
    difficulty: int
    challenge_id: str
    expires_ms: int


class _Payload(msgspec.Struct, frozen=True):
    r: str
    s: str
    d: int
    e: int
    i: str


# ---------------------------------------------------------------- errors

class PowRefused(Forbidden):
    code = "pow-invalid"
    title = "Proof of work refused"
    reason: ClassVar[str] = "invalid"


class PowRequired(PowRefused):
    code = "pow-required"
    title = "Proof of work required"
    reason = "missing"


class PowExpired(PowRefused):
    code = "pow-expired"
    title = "Proof-of-work challenge expired"
    reason = "expired"


class PowReplayed(PowRefused):
    code = "pow-replayed"
    title = "Proof-of-work challenge already used"
    reason = "replayed"


class PowWrongRoom(PowRefused):
    code = "pow-wrong-room"
    title = "Proof-of-work challenge is for another room"
    reason = "other_room"


# ---------------------------------------------------------------- helpers

def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(queue_token_secret: str) -> bytes:
    """The MAC key for challenges, separate from every other use of the secret."""
    return hmac.new(queue_token_secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def work_digest(challenge: str, nonce: str) -> bytes:
    return hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_difficulty(difficulty: int) -> None:
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be within 0..{MAX_DIFFICULTY}, got {difficulty}")


# ---------------------------------------------------------------- issue and verify

def issue_challenge(
    key: bytes,
    *,
    room: str,
    difficulty: int,
    now_ms: int,
    ttl_s: int,
    subject: str | None = None,
) -> PowChallenge:
    """A signed challenge for ``room``, bound to ``subject`` (a visitor id) or to a new pre-join nonce."""
    _check_difficulty(difficulty)
    subject = subject or "pj_" + secrets.token_urlsafe(16)
    expires_ms = now_ms + ttl_s * 1000
    payload = _b64(msgspec.json.encode(_Payload(room, subject, difficulty, expires_ms, secrets.token_urlsafe(16))))
    mac = _b64(hmac.new(key, f"{VERSION}.{payload}".encode(), hashlib.sha256).digest())
    return PowChallenge(challenge=f"{VERSION}.{payload}.{mac}", difficulty=difficulty,
                        expires_at=_rfc3339(expires_ms), subject=subject)


def solve(challenge: str, difficulty: int, start: int = 0) -> str:
    """Find a nonce (the reference solver: tests, benchmarks, the cost model)."""
    prefix = hashlib.sha256(f"{challenge}:".encode())
    nonce = start
    while True:
        h = prefix.copy()
        h.update(str(nonce).encode())
        if leading_zero_bits(h.digest()) >= difficulty:
            return str(nonce)
        nonce += 1


def check_solution(
    key: bytes,
    solution: PowSolution | None,
    *,
    room: str,
    min_difficulty: int,
    now_ms: int,
    subject: str | None = None,
) -> PowProof:
    """Every check that needs no Redis; raises a PowRefused subclass. Constant-time MAC check."""
    if solution is None:
        raise PowRequired(f"this room requires proof of work (difficulty {min_difficulty}): "
                          f"GET /api/rooms/{{room}}/pow, solve, and send it as \"pow\"",
                          difficulty=min_difficulty)
    match = _CHALLENGE_RE.match(solution.challenge)
    if not match:
        raise PowRefused("malformed challenge")
    payload_b64, mac_b64 = match.groups()
    expected = hmac.new(key, f"{VERSION}.{payload_b64}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64(mac_b64)):
        raise PowRefused("challenge signature does not verify")
    try:
        payload = msgspec.json.decode(_unb64(payload_b64), type=_Payload)
    except (msgspec.DecodeError, ValueError):  # signed by us, so only after a key reuse: refuse anyway
        raise PowRefused("malformed challenge") from None
    if not hmac.compare_digest(payload.r.encode(), room.encode()):
        raise PowWrongRoom("the challenge was issued for another room")
    if subject is not None and not hmac.compare_digest(payload.s.encode(), subject.encode()):
        raise PowRefused("the challenge was issued to another visitor")
    if now_ms > payload.e:
        raise PowExpired("the challenge has expired; fetch a new one")
    if payload.d < min_difficulty:
        raise PowRefused(f"the challenge's difficulty {payload.d} is below the room's {min_difficulty}; "
                         "fetch a new one", difficulty=min_difficulty)
    if leading_zero_bits(work_digest(solution.challenge, solution.nonce)) < payload.d:
        raise PowRefused("the nonce does not solve the challenge")
    return PowProof(room=payload.r, subject=payload.s, difficulty=payload.d, challenge_id=payload.i,
                    expires_ms=payload.e)


class PowStore:
    """Spent challenges: one key per challenge in the room's keyspace, expiring with it."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def spend(self, room: str, challenge_id: str, now_ms: int, expires_ms: int) -> bool:
        """True the first time, False on a replay."""
        ttl_ms = max(1000, expires_ms - now_ms + 1000)
        return bool(await self._redis.set(self._keys.pow_spent(room, challenge_id), b"1", nx=True, px=ttl_ms))


async def verify_solution(
    key: bytes,
    store: PowStore,
    solution: PowSolution | None,
    *,
    room: str,
    min_difficulty: int,
    now_ms: int,
    subject: str | None = None,
) -> PowProof:
    """Check a solution and spend its challenge (single use). Raises PowRefused (403) or
    DependencyUnavailable (503) when Redis cannot record the spend: fail closed, since a
    challenge that cannot be marked spent could be replayed without limit."""
    proof = check_solution(key, solution, room=room, min_difficulty=min_difficulty, now_ms=now_ms, subject=subject)
    try:
        first = await store.spend(room, proof.challenge_id, now_ms, proof.expires_ms)
    except (RedisError, OSError) as exc:
        raise DependencyUnavailable("cannot record the proof of work; retry", retry_after_s=1) from exc
    if not first:
        raise PowReplayed("this challenge was already used; fetch a new one")
    return proof


def solution_from_form(form: Mapping[str, Any]) -> PowSolution | None:
    """The solution posted by a form that pow.js attach()ed to (pow_challenge, pow_nonce), or None.

    Malformed fields raise ValidationFailed (422), like a malformed JSON body."""
    challenge, nonce = form.get("pow_challenge"), form.get("pow_nonce")
    if not challenge and not nonce:
        return None
    try:
        return msgspec.convert({"challenge": challenge, "nonce": nonce}, PowSolution)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"pow: {exc}", errors=[{"field": "pow", "message": str(exc)}]) from None


# ---------------------------------------------------------------- one-line use from a handler

def _now_ms() -> int:
    return int(time.time() * 1000)


def issue_for_app(app: Any, room: str, difficulty: int, subject: str | None = None,
                  now_ms: int | None = None) -> PowChallenge:
    """``GET /api/rooms/{room}/pow``: ``json_response(issue_for_app(request.app, room, cfg.pow_difficulty))``."""
    settings = app[SETTINGS]
    return issue_challenge(_key_for(settings.queue_token_secret), room=room, difficulty=difficulty,
                           now_ms=_now_ms() if now_ms is None else now_ms, ttl_s=settings.pow_challenge_ttl_s,
                           subject=subject)


async def verify_for_app(app: Any, solution: PowSolution | None, *, room: str, min_difficulty: int,
                         subject: str | None = None, now_ms: int | None = None) -> PowProof:
    """The join check: ``proof = await verify_for_app(request.app, body.pow, room=room,
    min_difficulty=cfg.pow_difficulty, subject=visitor_id_or_None)``; counts the outcome."""
    metrics = app[METRICS]
    try:
        proof = await verify_solution(
            _key_for(app[SETTINGS].queue_token_secret), PowStore(app[REDIS], app[KEYS]), solution,
            room=room, min_difficulty=min_difficulty, subject=subject,
            now_ms=_now_ms() if now_ms is None else now_ms)
    except PowRefused as exc:
        metrics.pow_verifications_total.labels(metrics.app_name, exc.reason).inc()
        raise
    except DependencyUnavailable:
        metrics.pow_verifications_total.labels(metrics.app_name, "error").inc()
        raise
    metrics.pow_verifications_total.labels(metrics.app_name, "ok").inc()
    return proof


@lru_cache(maxsize=8)
def _key_for(queue_token_secret: str | None) -> bytes:
    if not queue_token_secret:
        raise SettingsError("proof of work needs STAGEDOOR_QUEUE_TOKEN_SECRET")
    return derive_key(queue_token_secret)


# ---------------------------------------------------------------- cost model (docs/security.md, "Cost model")

def measure_hash_rate(seconds: float = 2.0, difficulty: int = 64) -> float:
    """Hashes per second of the reference solver on one core (difficulty 64: never stops early)."""
    challenge = issue_challenge(derive_key("bench"), room="bench", difficulty=0, now_ms=0, ttl_s=60).challenge
    prefix = hashlib.sha256(f"{challenge}:".encode())
    tried = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for nonce in range(tried, tried + 10_000):
            h = prefix.copy()
            h.update(str(nonce).encode())
            if leading_zero_bits(h.digest()) >= difficulty:  # pragma: no cover - 2**-64
                break
        tried += 10_000
    return tried / (time.perf_counter() - start)


if __name__ == "__main__":  # python -m stagedoor.pow [seconds]
    import sys

    rate = measure_hash_rate(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
    print(f"python hashlib solver, one core: {rate:,.0f} hashes/s")
    for d in (12, 14, 16, 18, 20, 22, 24):
        print(f"difficulty {d:2d}: {2 ** d:>12,} hashes expected, {2 ** d / rate:8.3f} s on this core")
