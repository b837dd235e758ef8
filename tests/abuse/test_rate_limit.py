"""Token buckets: the Lua script through its store (injected clock), and enforce() over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
from redis.exceptions import ResponseError

from stagedoor.embedded import EmbeddedRedis
from stagedoor.lua import LuaScripts
from stagedoor.rate_limit import Rate, RateLimitStore, parse_rate, policy_for
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings, SettingsError
from tests.support.abuse import limited_app

T0 = 1_800_000_000_000  # an arbitrary "now" in ms: the store never reads a clock itself


@pytest.fixture
async def store(redis_client: redis_asyncio.Redis, redis_prefix: str) -> RateLimitStore:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    return RateLimitStore(RedisCalls.batched(redis_client, scripts), RedisKeys(redis_prefix))


# ---------------------------------------------------------------- the script, through its store

async def test_a_burst_takes_the_whole_bucket_then_is_refused_with_the_wait(store: RateLimitStore,
                                                                           redis_client: Any) -> None:
    rate = parse_rate("5/10s")  # 1 token per 2 s
    key = store.bucket_key("join", "ip", "192.0.2.1")
    results = [await store.take(key, rate, T0) for _ in range(8)]
    assert [r.allowed for r in results] == [True] * 5 + [False] * 3
    assert results[4].tokens_left == 0
    assert results[5].wait_ms == 2000
    before = await redis_client.hgetall(key)
    refused = await store.take(key, rate, T0 + 500)
    assert not refused.allowed and refused.wait_ms == 1500
    assert await redis_client.hgetall(key) == before, "a refusal writes nothing"


async def test_steady_traffic_at_the_rate_is_never_refused(store: RateLimitStore) -> None:
    rate = parse_rate("10/1s")  # one token every 100 ms
    key = store.bucket_key("status", "subject", "visitor-steady")
    for i in range(300):  # 30 s of traffic at exactly the limit, after a full burst
        decision = await store.take(key, rate, T0 + i * 100)
        assert decision.allowed, f"request {i} refused"
    burst = [await store.take(key, rate, T0 + 29_900) for _ in range(11)]
    assert sum(d.allowed for d in burst) <= 10


async def test_tokens_come_back_after_the_announced_wait(store: RateLimitStore) -> None:
    rate = Rate(burst=2, period_ms=60_000)
    key = store.bucket_key("login", "subject", "fan@example.test")
    assert (await store.take(key, rate, T0)).allowed
    assert (await store.take(key, rate, T0)).allowed
    refused = await store.take(key, rate, T0 + 1000)
    assert not refused.allowed and refused.wait_ms == 29_000
    assert not (await store.take(key, rate, T0 + 1000 + refused.wait_ms - 1)).allowed
    assert (await store.take(key, rate, T0 + 1000 + refused.wait_ms)).allowed


async def test_a_clock_behind_the_bucket_refills_nothing(store: RateLimitStore) -> None:
    rate = Rate(burst=1, period_ms=10_000)
    key = store.bucket_key("hold", "subject", "user-1")
    assert (await store.take(key, rate, T0)).allowed
    assert not (await store.take(key, rate, T0 - 60_000)).allowed  # another node's slow clock
    assert (await store.take(key, rate, T0 + 10_000)).allowed


async def test_the_bucket_expires_once_it_would_be_full(store: RateLimitStore, redis_client: Any) -> None:
    rate = parse_rate("4/8s")
    key = store.bucket_key("search", "ip", "192.0.2.9")
    await store.take(key, rate, T0)
    ttl = await redis_client.pttl(key)
    assert 0 < ttl <= 2001  # one token missing = 2 s to refill


async def test_buckets_are_per_class_per_scope_and_hash_tagged(store: RateLimitStore, redis_prefix: str) -> None:
    a = store.bucket_key("join", "ip", "192.0.2.1")
    assert a.startswith(f"{redis_prefix}:{{rl:join_ip:") and a.endswith("}")
    assert a != store.bucket_key("join", "subject", "192.0.2.1")
    assert a != store.bucket_key("hold", "ip", "192.0.2.1")
    odd = store.bucket_key("login", "subject", "x}{y" * 1000)  # braces and length cannot leak into the key
    assert odd.count("{") == 1 and len(odd) < 80


async def test_the_script_refuses_impossible_arguments(store: RateLimitStore) -> None:
    key = store.bucket_key("join", "ip", "192.0.2.1")
    with pytest.raises(ResponseError, match="invalid arguments"):
        await store.take(key, Rate(burst=2, period_ms=1000), T0, cost=3)


async def test_several_buckets_are_taken_in_one_round_trip(store: RateLimitStore) -> None:
    ip, visitor = store.bucket_key("join", "ip", "192.0.2.1"), store.bucket_key("join", "subject", "v1")
    first = await store.take_many([(ip, Rate(3, 60_000), 1), (visitor, Rate(1, 60_000), 1)], T0)
    assert [d.allowed for d in first] == [True, True]
    second = await store.take_many([(ip, Rate(3, 60_000), 1), (visitor, Rate(1, 60_000), 1)], T0)
    assert [d.allowed for d in second] == [True, False] and second[1].wait_ms == 60_000


async def test_buckets_are_taken_after_script_flush(tmp_path: Path) -> None:
    # Its own server: SCRIPT FLUSH on the shared one would disturb the tests running beside us.
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    client = redis_asyncio.Redis.from_url(server.url)
    try:
        scripts = LuaScripts(client)
        await scripts.load_all()
        store = RateLimitStore(RedisCalls.batched(client, scripts), RedisKeys("t"))
        await client.script_flush()
        buckets = [(store.bucket_key("hold", "ip", "192.0.2.1"), Rate(1, 1000), 1),
                   (store.bucket_key("hold", "subject", "u"), Rate(1, 1000), 1)]
        assert [d.allowed for d in await store.take_many(buckets, T0)] == [True, True]
        assert [d.allowed for d in await store.take_many(buckets, T0)] == [False, False]
    finally:
        await client.aclose()
        server.stop()


def test_rates_parse_and_bad_ones_are_refused() -> None:
    assert parse_rate("20/10s") == Rate(20, 10_000)
    assert parse_rate("1/250ms") == Rate(1, 250)
    assert parse_rate("3/10m") == Rate(3, 600_000)
    assert parse_rate("100/1h").per_second == pytest.approx(100 / 3600)
    for bad in ("0/1s", "10/0s", "10", "10/s", "-1/1s", "10/1d", "1e3/1s"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_bad_rate_settings_fail_at_start(abuse_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError, match="STAGEDOOR_RATE_LIMIT_JOIN_PER_IP"):
        abuse_settings(rate_limit_join_per_ip="lots")
    with pytest.raises(SettingsError, match="STAGEDOOR_RATE_LIMIT_EXEMPT_IPS"):
        policy_for(abuse_settings(rate_limit_exempt_ips="10.0.0.0/8, not-an-ip"))
    with pytest.raises(SettingsError, match="STAGEDOOR_TRUSTED_PROXIES"):
        policy_for(abuse_settings(trusted_proxies="300.1.1.1"))


# ---------------------------------------------------------------- enforce() over HTTP

async def test_a_burst_gets_429_with_retry_after(aiohttp_client: Any, abuse_settings: Callable[..., Settings]) -> None:
    client = await aiohttp_client(limited_app(abuse_settings(rate_limit_join_per_ip="5/60s")))
    statuses = []
    for _ in range(8):
        resp = await client.post("/limited/join")
        statuses.append(resp.status)
        if resp.status == 429:
            last = resp
    assert statuses == [200] * 5 + [429] * 3
    assert last.headers["Retry-After"] == "12"  # one token per 12 s
    assert last.content_type == "application/problem+json"
    body = await last.json()
    assert body["type"] == "/problems/rate-limited" and body["status"] == 429 and body["limit"] == "join"
    metrics = await (await client.get("/metrics")).text()
    assert 'stagedoor_rate_limit_decisions_total{app="abusetest",limit="join_per_ip",outcome="limited"} 3.0' in metrics
    assert 'stagedoor_rate_limit_decisions_total{app="abusetest",limit="join_per_ip",outcome="allowed"} 5.0' in metrics


async def test_steady_traffic_under_the_limit_never_gets_429(aiohttp_client: Any,
                                                             abuse_settings: Callable[..., Settings]) -> None:
    # 20/s allowed with a burst of 20; we send about 5/s for 2 s: a quarter of the rate, so
    # no scheduling hiccup on a busy machine can empty the bucket.
    client = await aiohttp_client(limited_app(abuse_settings(rate_limit_status_per_ip="20/1s",
                                                             rate_limit_status_per_subject="20/1s")))
    for _ in range(10):
        resp = await client.post("/limited/status", params={"subject": "visitor-1"})
        assert resp.status == 200
        await asyncio.sleep(0.2)


async def test_subject_buckets_are_separate_and_the_ip_bucket_caps_them_all(
        aiohttp_client: Any, abuse_settings: Callable[..., Settings]) -> None:
    client = await aiohttp_client(limited_app(abuse_settings(
        rate_limit_hold_per_ip="6/60s", rate_limit_hold_per_subject="2/60s")))
    got = [(await client.post("/limited/hold", params={"subject": s})).status for s in ("u1", "u1", "u1")]
    assert got == [200, 200, 429]  # the subject's own bucket
    got = [(await client.post("/limited/hold", params={"subject": s})).status for s in ("u2", "u2", "u3", "u4")]
    assert got == [200, 200, 200, 429]  # u4 is fresh, but this IP spent its 6 tokens


async def test_a_subject_only_check_leaves_the_ip_bucket_alone(
        aiohttp_client: Any, abuse_settings: Callable[..., Settings]) -> None:
    client = await aiohttp_client(limited_app(abuse_settings(
        rate_limit_status_per_ip="1/60s", rate_limit_status_per_subject="2/60s")))
    got = [(await client.post("/limited/status", params={"subject": "v1", "ip": "0"})).status for _ in range(3)]
    assert got == [200, 200, 429]
    assert (await client.post("/limited/status", params={"ip": "0"})).status == 200  # no subject: the IP counts
    assert (await client.post("/limited/status", params={"ip": "0"})).status == 429


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_bucket(
        aiohttp_client: Any, abuse_settings: Callable[..., Settings]) -> None:
    settings = abuse_settings(rate_limit_search_per_ip="3/60s", trusted_proxies="10.0.0.0/8")
    client = await aiohttp_client(limited_app(settings))
    statuses = [(await client.post("/limited/search", headers={"X-Forwarded-For": f"198.51.100.{i}"})).status
                for i in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]


async def test_a_trusted_proxy_forwarded_for_picks_the_right_most_untrusted_hop(
        aiohttp_client: Any, abuse_settings: Callable[..., Settings]) -> None:
    settings = abuse_settings(rate_limit_search_per_ip="2/60s", trusted_proxies="127.0.0.1, 10.0.0.0/8")
    client = await aiohttp_client(limited_app(settings))

    async def post(xff: str) -> int:
        return (await client.post("/limited/search", headers={"X-Forwarded-For": xff})).status

    # Each real client (as the proxy saw it) gets its own bucket...
    assert [await post("198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert await post("198.51.100.2") == 200
    # ...and what a client writes left of its real address changes nothing.
    assert await post("203.0.113.77, 198.51.100.1") == 429
    assert await post("203.0.113.78, 198.51.100.1, 10.1.2.3") == 429  # inner trusted hop skipped


async def test_exempt_ips_and_disabled_limits_are_never_limited(
        aiohttp_client: Any, abuse_settings: Callable[..., Settings]) -> None:
    exempt = await aiohttp_client(limited_app(abuse_settings(rate_limit_join_per_ip="1/60s",
                                                             rate_limit_exempt_ips="127.0.0.0/8")))
    assert [(await exempt.post("/limited/join")).status for _ in range(3)] == [200] * 3
    assert 'limit="join_per_ip",outcome="exempt"} 3.0' in await (await exempt.get("/metrics")).text()
    off = await aiohttp_client(limited_app(abuse_settings(rate_limit_join_per_ip="1/60s", rate_limits_enabled=False)))
    assert [(await off.post("/limited/join")).status for _ in range(3)] == [200] * 3


async def test_redis_down_fails_open_and_is_counted(aiohttp_client: Any, tmp_path: Path,
                                                    abuse_settings: Callable[..., Settings]) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        client = await aiohttp_client(limited_app(abuse_settings(
            redis_url=server.url, rate_limit_join_per_ip="1/60s", dependency_timeout_s=0.5)))
        assert (await client.post("/limited/join")).status == 200
        assert (await client.post("/limited/join")).status == 429
    finally:
        server.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert [(await client.post("/limited/join")).status for _ in range(5)] == [200] * 5
    assert loop.time() - started < 5 * 0.5, "after one failure the limiter is bypassed, not retried per request"
    metrics = await (await client.get("/metrics")).text()
    assert 'limit="join_per_ip",outcome="error"} 5.0' in metrics
