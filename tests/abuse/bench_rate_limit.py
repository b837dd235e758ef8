"""Throughput of one rate-limit check (IP + subject buckets, one pipelined round trip) next to
one bare EVALSHA of the same script, on the same Redis, in the same run. Not a test.

    STAGEDOOR_BENCH_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m tests.abuse.bench_rate_limit
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from stagedoor import rate_limit
from stagedoor.metrics import BaseMetrics
from stagedoor.rate_limit import Rate, RateLimitStore
from stagedoor.settings import load_settings
from stagedoor.web import CALLS, KEYS, REDIS, base_app

N = 6000
CONCURRENCY = 32


async def rate(label: str, op: object) -> None:
    async def worker() -> None:
        for i in range(N // CONCURRENCY):
            await op(i)  # type: ignore[operator]

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    print(f"{label:48s} {N / elapsed:9,.0f}/s  ({CONCURRENCY} concurrent, {N} calls)")


async def main() -> None:
    prefix = "bench" + uuid.uuid4().hex[:8]
    url = os.environ.get("STAGEDOOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = load_settings(environ={}, redis_url=url, redis_key_prefix=prefix, rate_limit_join_per_ip="999999/1s",
                             rate_limit_join_per_subject="999999/1s")
    app = base_app(settings, BaseMetrics("bench"), [], title="bench", uses_db=False)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        request = make_mocked_request("POST", "/api/rooms/r/join", app=app)
        store = RateLimitStore(app[CALLS], app[KEYS])
        bucket = Rate(999_999, 1000)
        ip_key = store.bucket_key("join", "ip", "192.0.2.1")
        for _ in range(3):
            await rate("bare EVALSHA rate_limit (one bucket)",
                       lambda i: store.take(ip_key, bucket, int(time.time() * 1000)))
            await rate("rate_limit.check: IP + visitor buckets",
                       lambda i: rate_limit.check(request, "join", f"visitor-{i % 100}"))
            await rate("rate_limit.check: visitor bucket only (per_ip=False)",
                       lambda i: rate_limit.check(request, "join", f"visitor-{i % 100}", per_ip=False))
    finally:
        redis = app[REDIS]
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
