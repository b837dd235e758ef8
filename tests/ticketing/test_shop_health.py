"""The shop's health as ticketing records it for the automatic admission rate: admitted fans'
hold and purchase requests, counted per room and second in Redis, 4xx not counted as errors,
requests without a valid admission token not counted at all."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from rooms.shop_health import ShopHealthReader, ShopHealthRecorder
from stagedoor.admission_tokens import mint_admission_token
from stagedoor.keys import KeyRing
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from ticketing.appkeys import SHOP_HEALTH
from ticketing.holds import shopper_session


async def test_admitted_fans_requests_are_counted_per_room(service_client: Any, make_settings: Any,
                                                           make_event: Any, create_user: Any, keyring: KeyRing,
                                                           redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(rate_limits_enabled=False)
    shop = await service_client("ticketing", settings)
    event, other = await make_event(shop), await make_event(shop)
    fan = await create_user()
    token, _ = mint_admission_token(keyring, visitor_id="1_fan0", room="hot", event_id=str(event["id"]), ttl_s=600)
    wrong, _ = mint_admission_token(keyring, visitor_id="1_fan0", room="cold", event_id=str(other["id"]), ttl_s=600)
    path = f"/api/events/{event['id']}/holds"
    body = {"tier": "A", "quantity": 1}
    for _ in range(4):  # admitted fans' requests, refused: a fan's 4xx is no error of the shop's
        resp = await shop.post(path, json=body, headers={**fan.headers, "X-Admission-Token": token})
        assert 400 <= resp.status < 500
    assert 400 <= (await shop.post(path, json=body, headers=fan.headers)).status < 500  # no token: not counted
    resp = await shop.post(path, json=body, headers={**fan.headers, "X-Admission-Token": wrong})
    assert 400 <= resp.status < 500  # a token for another event: not counted, for neither room
    resp = await shop.post(path, json=body, headers={"X-Admission-Token": token})
    assert resp.status == 401  # not signed in: refused before any shop work, not counted

    async def failing(*args: Any) -> bool:
        raise RedisConnectionError("injected")

    monkeypatch.setattr(shopper_session, "is_active", failing)
    resp = await shop.post(path, json=body, headers={**fan.headers, "X-Admission-Token": token})
    assert resp.status == 503
    # the purchase route counts too (an unknown hold of the event: 404, a fan's error)
    resp = await shop.post(f"/api/holds/{event['id']}-{'0' * 24}/purchase",
                           json={"payment": {"method": "card", "token": "tok_ok"}, "email": "fan@example.test"},
                           headers={**fan.headers, "X-Admission-Token": token, "Idempotency-Key": "k1"})
    assert resp.status == 404, await resp.text()

    await shop.app[SHOP_HEALTH].flush()
    keys = RedisKeys(settings.redis_key_prefix)
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    reader = ShopHealthReader(RedisCalls.batched(redis_client, scripts), keys)
    hot = await reader.window("hot", time.time() + 1, 30)
    assert (hot.requests, hot.errors) == (6, 1)
    assert hot.p99_ms > 0
    assert (await reader.window("cold", time.time() + 1, 30)).requests == 0
    ttls = [await redis_client.ttl(k) async for k in redis_client.scan_iter(match=keys.room("hot", "health:*"))]
    assert ttls and all(0 < t <= 60 for t in ttls)


async def test_one_pipelined_write_per_flush_whatever_the_request_count(settings: Any, redis_client: Any) -> None:
    """The cost: requests add up in memory; a flush writes each room-second once."""
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    keys = RedisKeys(settings.redis_key_prefix)
    calls = RedisCalls.batched(redis_client, scripts)
    sent: list[int] = []
    real = calls.commands

    async def counting(*commands: Any) -> list[Any]:
        sent.append(len(commands))
        return await real(*commands)

    calls.commands = counting  # type: ignore[method-assign]
    now = [1_800_000_000.2]
    recorder = ShopHealthRecorder(calls, keys, clock=lambda: now[0], flush_s=3600)
    for i in range(1000):
        recorder.record("hot", 0.003 if i % 50 else 0.7, failed=i % 250 == 0)  # 2 % slow: p99 is theirs
    await recorder.flush()
    assert sent == [5]  # one call: HINCRBY n, e and two latency buckets, an EXPIRE
    await recorder.flush()
    assert sent == [5]  # nothing new: nothing sent
    window = await ShopHealthReader(calls, keys).window("hot", now[0] + 1, 1)
    assert (window.requests, window.errors, window.p99_ms) == (1000, 4, 1000.0)
