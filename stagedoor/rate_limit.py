"""Rate limits: token buckets in Redis, one Lua call per bucket, enforced in one line.

A handler calls ``await enforce(request, "join", visitor_id)``. That takes one token from
the endpoint class's per-IP bucket and, when a subject (visitor, user, login name) is
given, one from its per-subject bucket; if either is empty it raises
``RateLimited`` (429 + ``Retry-After``, the larger of the two waits). The limits are
settings (``STAGEDOOR_RATE_LIMIT_<CLASS>_PER_IP`` / ``_PER_SUBJECT`` = "<burst>/<period>").

Keys: ``<prefix>:{rl:<class>_<scope>:<digest>}`` where the digest is a BLAKE2b of the IP
bucket (IPv4 address, IPv6 /64) or of the subject: bounded length, no emails or braces in
key names, and each bucket its own Cluster slot (each script call touches one key).

Redis unreachable -> fail OPEN: the request goes through, the decision is counted with
outcome "error" and a warning is logged (at most once per 10 s); for the next 2 s the limiter
is not even tried (so a blackholed Redis costs one timeout per 2 s, not one per request),
then the next request probes Redis again. Rationale: a limiter
outage must not become a full outage of ticketing, which keeps selling from PostgreSQL
when Redis is down; the waiting room itself needs Redis to queue anyone, so nothing is
gained there by refusing earlier. The call is bounded by ``dependency_timeout_s``.

Both buckets are debited independently (they live in different slots): a request refused
by its subject bucket still spent its IP token. That errs on the strict side.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec
from redis.exceptions import RedisError

from stagedoor.client_ip import IPNetwork, client_ip, ip_bucket, is_within, parse_ip, parse_networks
from stagedoor.errors import RateLimited
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.request_view import RequestView
from stagedoor.settings import Settings, SettingsError
from stagedoor.web import CALLS, KEYS, METRICS, REDIS, SETTINGS

logger = logging.getLogger(__name__)

LimitClass = Literal["join", "status", "hold", "purchase", "register", "login", "search"]
LIMIT_CLASSES: tuple[str, ...] = ("join", "status", "hold", "purchase", "register", "login", "search")
Scope = Literal["ip", "subject"]

MAX_SUBJECT_CHARS = 512  # subjects are hashed; a longer one is cut before hashing
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_SPEC_RE = re.compile(r"^([1-9][0-9]{0,5})/([1-9][0-9]{0,7})(ms|s|m|h)$")
_WARN_EVERY_S = 10.0
BYPASS_AFTER_ERROR_S = 2.0  # after a Redis error the limiter is skipped (fail open) this long, then retried


class Rate(msgspec.Struct, frozen=True):
    """A token bucket: ``burst`` tokens, refilled completely in ``period_ms``."""

    burst: int
    period_ms: int

    @property
    def per_second(self) -> float:
        return self.burst * 1000 / self.period_ms


def parse_rate(spec: str) -> Rate:
    """ "20/10s" -> Rate(burst=20, period_ms=10_000); ValueError for anything else."""
    match = _SPEC_RE.match(spec.strip())
    if not match:
        raise ValueError(f"invalid rate {spec!r}: expected <burst>/<period><ms|s|m|h>, e.g. 20/10s")
    burst, amount, unit = match.groups()
    period_ms = int(amount) * _UNIT_MS[unit]
    if period_ms > 86_400_000 * 7:
        raise ValueError(f"invalid rate {spec!r}: period longer than a week")
    return Rate(int(burst), period_ms)


class Decision(msgspec.Struct, frozen=True):
    allowed: bool
    tokens_left: int
    wait_ms: int


class RateLimitStore:
    """The token buckets in Redis: one method per operation, through lua/rate_limit.lua."""

    def __init__(self, calls: RedisCalls, keys: RedisKeys) -> None:
        self._calls = calls
        self._keys = keys

    def bucket_key(self, limit: str, scope: Scope, identity: str) -> str:
        digest = hashlib.blake2b(identity[:MAX_SUBJECT_CHARS].encode("utf-8", "replace"), digest_size=12)
        return self._keys.rate_bucket(f"{limit}_{scope}", digest.hexdigest())

    async def take(self, key: str, rate: Rate, now_ms: int, cost: int = 1) -> Decision:
        allowed, left, wait_ms = await self._calls.script(
            "rate_limit", [key], [now_ms, rate.burst, rate.period_ms, cost])
        return Decision(bool(allowed), int(left), int(wait_ms))

    async def take_many(self, buckets: Sequence[tuple[str, Rate, int]], now_ms: int) -> list[Decision]:
        """Debit several buckets (key, rate, cost): their script calls share one round trip
        (each bucket its own call, so each may live on its own Cluster slot)."""
        script = self._calls.script
        replies = await asyncio.gather(*(script("rate_limit", [key], [now_ms, rate.burst, rate.period_ms, cost])
                                         for key, rate, cost in buckets))
        return [Decision(bool(a), int(left), int(wait)) for a, left, wait in replies]


class RatePolicy(msgspec.Struct, frozen=True):
    """The parsed limits of one Settings object."""

    enabled: bool
    rates: dict[str, Rate]  # "<class>_per_ip" / "<class>_per_subject" -> Rate
    exempt: tuple[IPNetwork, ...]
    trusted_proxies: str
    timeout_s: float

    def rate(self, limit: str, scope: Scope) -> Rate:
        return self.rates[f"{limit}_per_{scope}"]

    def is_exempt(self, ip: str) -> bool:
        addr = parse_ip(ip)
        return addr is not None and is_within(addr, self.exempt)


_policies: dict[int, tuple[Settings, RatePolicy]] = {}  # id(settings) -> (settings, its policy)


def policy_for(settings: Settings) -> RatePolicy:
    """The parsed policy of ``settings``, remembered per settings object (by identity: hashing the
    whole frozen Settings on every request, as an lru_cache would, costs more than the check)."""
    hit = _policies.get(id(settings))
    if hit is not None and hit[0] is settings:
        return hit[1]
    policy = _parse_policy(settings)
    if len(_policies) >= 64:
        _policies.clear()
    _policies[id(settings)] = (settings, policy)
    return policy


def _parse_policy(settings: Settings) -> RatePolicy:
    """Parse and validate the rate-limit settings (SettingsError names the bad variable)."""
    rates: dict[str, Rate] = {}
    for limit in LIMIT_CLASSES:
        for scope in ("ip", "subject"):
            field = f"rate_limit_{limit}_per_{scope}"
            try:
                rates[f"{limit}_per_{scope}"] = parse_rate(getattr(settings, field))
            except ValueError as exc:
                raise SettingsError(f"STAGEDOOR_{field.upper()}: {exc}") from None
    exempt = parse_networks(settings.rate_limit_exempt_ips, "STAGEDOOR_RATE_LIMIT_EXEMPT_IPS")
    parse_networks(settings.trusted_proxies)  # fail early on a bad proxy list too
    return RatePolicy(enabled=settings.rate_limits_enabled, rates=rates, exempt=exempt,
                      trusted_proxies=settings.trusted_proxies, timeout_s=settings.dependency_timeout_s)


def validate_settings(settings: Settings) -> None:
    """Call at startup so a bad rate fails the process, not the first request."""
    policy_for(settings)


_last_warning = [0.0]
_bypass_until: dict[int, float] = {}  # id(redis client) -> monotonic time until which the limiter is skipped


def _warn_fail_open(limit: str, exc: BaseException) -> None:
    now = time.monotonic()
    if now - _last_warning[0] >= _WARN_EVERY_S:
        _last_warning[0] = now
        logger.warning("rate_limit_fail_open", extra={"limit": limit, "error": type(exc).__name__})


def _wall_ms() -> int:
    return int(time.time() * 1000)


async def check(
    request: RequestView,
    limit: str,
    subject: str | None = None,
    *,
    cost: int = 1,
    per_ip: bool = True,
    clock_ms: Callable[[], int] = _wall_ms,
) -> int:
    """Debit the buckets of ``limit``; returns 0 when allowed, else the wait in ms (no exception).

    ``per_ip=False`` skips the IP bucket (one Redis call instead of a pipeline of two) for hot
    paths where the subject is already authenticated, e.g. status polls with a valid queue token.
    """
    app = request.app
    settings = app[SETTINGS]
    if not settings.rate_limits_enabled:
        return 0
    policy = policy_for(settings)
    if limit not in LIMIT_CLASSES:
        raise ValueError(f"unknown rate-limit class {limit!r}")  # a bug in the caller
    metrics = app[METRICS]
    counter = metrics.rate_limit_decisions_total
    ip = client_ip(request, policy.trusted_proxies)
    if policy.is_exempt(ip):
        counter.labels(metrics.app_name, f"{limit}_per_ip", "exempt").inc()
        return 0
    store = RateLimitStore(app[CALLS], app[KEYS])
    checks: list[tuple[str, str, Rate]] = []
    if per_ip or not subject:
        checks.append((f"{limit}_per_ip", store.bucket_key(limit, "ip", ip_bucket(ip)), policy.rate(limit, "ip")))
    if subject:
        checks.append((f"{limit}_per_subject", store.bucket_key(limit, "subject", subject),
                       policy.rate(limit, "subject")))
    redis = app[REDIS]
    if _bypass_until and time.monotonic() < _bypass_until.get(id(redis), 0.0):
        for name, _, _ in checks:  # Redis failed moments ago: do not make every request wait for it
            counter.labels(metrics.app_name, name, "error").inc()
        return 0
    now_ms = clock_ms()
    try:
        async with asyncio.timeout(policy.timeout_s):
            decisions = await store.take_many([(key, rate, min(cost, rate.burst)) for _, key, rate in checks],
                                              now_ms)
    except (RedisError, OSError, TimeoutError) as exc:
        for name, _, _ in checks:
            counter.labels(metrics.app_name, name, "error").inc()
        _bypass_until[id(redis)] = time.monotonic() + BYPASS_AFTER_ERROR_S
        _warn_fail_open(limit, exc)
        return 0
    if _bypass_until:
        _bypass_until.pop(id(redis), None)
    wait_ms = 0
    for (name, _, _), decision in zip(checks, decisions, strict=True):
        counter.labels(metrics.app_name, name, "allowed" if decision.allowed else "limited").inc()
        if not decision.allowed:
            wait_ms = max(wait_ms, decision.wait_ms, 1)
    return wait_ms


async def enforce(
    request: RequestView,
    limit: str,
    subject: str | None = None,
    *,
    cost: int = 1,
    per_ip: bool = True,
    clock_ms: Callable[[], int] = _wall_ms,
) -> None:
    """Raise RateLimited (429 + Retry-After) when ``limit`` is exhausted for this IP or subject."""
    if not request.app[SETTINGS].rate_limits_enabled:
        return  # as check() would decide, without its coroutine (status polls and joins pass here)
    wait_ms = await check(request, limit, subject, cost=cost, per_ip=per_ip, clock_ms=clock_ms)
    if wait_ms:
        raise RateLimited(math.ceil(wait_ms / 1000), f"too many {limit} requests; retry later", limit=limit)
