"""Cost of authenticating a request and of a password check (not a test; run by hand):

    STAGEDOOR_BENCH_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m tests.accounts.bench_auth

Prints, on one core: principal_from_token with a warm cache (the common case: the token was
verified before and the subject's revocation marker was read within revocation_cache_s), cold
(a new token: one EdDSA verification + one Redis GET), the bare EdDSA verification beside it
(the raw limit: about 8.4 k/s on one core of a quiet 2-core machine), and one argon2id
verification with the default cost settings. Reads only (GETs) from Redis.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from redis.asyncio import Redis

from stagedoor.auth import ACCESS_AUDIENCE, mint_access_token, principal_from_token
from stagedoor.keys import KeyRing
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import load_settings
from stagedoor.web import KEYRING, KEYS, REDIS, SETTINGS
from ticketing.accounts.passwords import Passwords


async def main() -> None:
    settings = load_settings(environ={}, admin_api_key="bench-" + "k" * 26)
    keyring = KeyRing.generate()
    redis = Redis.from_url(os.environ.get("STAGEDOOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    app = web.Application()
    app[SETTINGS], app[KEYRING], app[REDIS], app[KEYS] = settings, keyring, redis, RedisKeys("benchauth")
    request = make_mocked_request("GET", "/", app=app)
    try:
        token = mint_access_token(keyring, subject="u0", roles=["customer"], ttl_s=300)
        await principal_from_token(request, token)
        n = 20_000
        start = time.perf_counter()
        for _ in range(n):
            await principal_from_token(request, token)
        warm = n / (time.perf_counter() - start)
        fresh = [mint_access_token(keyring, subject=f"u{i}", roles=["customer"], ttl_s=300) for i in range(3000)]
        start = time.perf_counter()
        for t in fresh:
            await principal_from_token(request, t)
        cold = len(fresh) / (time.perf_counter() - start)
        bare = [mint_access_token(keyring, subject=f"v{i}", roles=["customer"], ttl_s=300) for i in range(3000)]
        start = time.perf_counter()
        for t in bare:
            keyring.verify(t, ACCESS_AUDIENCE)
        raw = len(bare) / (time.perf_counter() - start)
    finally:
        await redis.aclose()
    passwords = Passwords.from_settings(settings)
    stored = await passwords.hash("violet-otter-harbour-42")
    times = []
    for _ in range(10):
        start = time.perf_counter()
        await passwords.verify(stored, "violet-otter-harbour-42")
        times.append(time.perf_counter() - start)
    print(f"authenticate, warm caches:              {warm:>10,.0f} /s")
    print(f"authenticate, new token (verify + GET): {cold:>10,.0f} /s")
    print(f"bare EdDSA verify (raw limit):          {raw:>10,.0f} /s")
    print(f"argon2id verify (t={settings.argon2_time_cost}, m={settings.argon2_memory_kib} KiB, "
          f"p={settings.argon2_parallelism}), median: {statistics.median(times) * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
