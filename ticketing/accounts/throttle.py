"""Failed-login throttling per account and per client IP, in Redis.

Each failed password check (unknown email or wrong password alike) increments two
counters that live for one failure window from the first failure: one per account
(keyed by a hash of the lower-cased email, so no address is stored in Redis) and one per
IP bucket: the same identity the request rate limits use (``stagedoor.client_ip.ip_bucket``:
an IPv4 address itself, an IPv6 address its /64, since one subscriber line gets a whole /64
and per-address counters would give a guesser 2**64 fresh ones). While either counter is at
its limit, password logins for that account or from that IP bucket are refused with 429 and
``Retry-After`` = the counter's remaining lifetime, before any password is checked (a
throttled guess costs no argon2 time). A successful login clears the account counter, not the IP one.

The account counter cannot tell the owner from an attacker, so an attacker can lock an
account for one window at most; the per-IP limit is the one that stops spraying.
Redis unreachable -> fail open (logged): logins keep working, unthrottled.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from stagedoor.client_ip import ip_bucket
from stagedoor.errors import RateLimited
from stagedoor.redis_keys import RedisKeys

logger = logging.getLogger(__name__)


class LoginThrottled(RateLimited):
    code = "login-throttled"
    title = "Too many failed logins"


def account_subject(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class LoginThrottle:
    def __init__(self, redis: Redis, keys: RedisKeys, *, per_account: int, per_ip: int, window_s: int,
                 timeout_s: float = 1.0) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self._keys = keys
        self.per_account = per_account
        self.per_ip = per_ip
        self.window_s = window_s

    def _keys_for(self, email: str, ip: str) -> tuple[str, str]:
        return (self._keys.login_failures("acct", account_subject(email)),
                self._keys.login_failures("ip", ip_bucket(ip)))

    async def check(self, email: str, ip: str) -> None:
        """Raise LoginThrottled when the account or the IP is at its failure limit."""
        account_key, ip_key = self._keys_for(email, ip)
        try:
            async with asyncio.timeout(self._timeout_s), self._redis.pipeline(transaction=False) as pipe:
                # one command a statement: redis-py types a pipeline's commands as the client's
                # (awaitables), not as the pipeline they return
                pipe.get(account_key)
                pipe.pttl(account_key)
                pipe.get(ip_key)
                pipe.pttl(ip_key)
                account_n, account_ttl, ip_n, ip_ttl = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("login_throttle_fail_open", extra={"error": type(exc).__name__})
            return
        wait_ms = 0
        if account_n is not None and int(account_n) >= self.per_account:
            wait_ms = max(wait_ms, int(account_ttl), 1000)
        if ip_n is not None and int(ip_n) >= self.per_ip:
            wait_ms = max(wait_ms, int(ip_ttl), 1000)
        if wait_ms:
            retry_after_s = max(1, -(-wait_ms // 1000))
            raise LoginThrottled(retry_after_s, "too many failed logins; retry later")

    async def record_failure(self, email: str, ip: str) -> None:
        account_key, ip_key = self._keys_for(email, ip)
        window_ms = self.window_s * 1000
        try:
            async with asyncio.timeout(self._timeout_s), self._redis.pipeline(transaction=False) as pipe:
                for key in (account_key, ip_key):
                    pipe.set(key, 0, nx=True, px=window_ms)
                    pipe.incr(key)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("login_throttle_fail_open", extra={"error": type(exc).__name__})

    async def record_success(self, email: str) -> None:
        account_key = self._keys.login_failures("acct", account_subject(email))
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.delete(account_key)
        except (RedisError, OSError, TimeoutError) as exc:
            logger.warning("login_throttle_fail_open", extra={"error": type(exc).__name__})
