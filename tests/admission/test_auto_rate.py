"""The automatic rate's settings over the admin API (validated, recorded in PostgreSQL, copied
into the room's config hash) and its steps in Redis: one per control period whatever the number
of controller replicas, kept across admin writes, started again from rate_per_s after a loss."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from admission.appkeys import ADMIN
from admission.auto_rate import AutoRate
from admission.metrics import AdmissionMetrics
from admission.rate_control import RateLaw
from rooms.auto_rate_store import AutoRateStore
from rooms.queue_store import TickResult
from rooms.shop_health import ShopHealthReader, ShopHealthRecorder
from rooms.store import RoomStore
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from tests.support.rooms import PROBLEM, T0, put_room, room_config

AUTO = {"rate_mode": "auto", "rate_per_s": 10, "rate_min_per_s": 2, "rate_max_per_s": 40, "target_p99_ms": 500,
        "target_error_rate": 0.02}
WAITING = TickResult(outcome="ok", admitted=1, abandoned=0, sessions_expired=0, waiting=50, active=10)


@pytest.fixture
def adm_settings(make_settings: Any) -> Settings:
    return make_settings(rate_limits_enabled=False)


@pytest.fixture
async def adm(service_client: Any, adm_settings: Settings) -> Any:
    return await service_client("admission", adm_settings)


async def _cfg(redis_client: Any, keys: RedisKeys, room: str) -> dict[str, str]:
    raw = await redis_client.hgetall(keys.room_config(room))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def _record(db: asyncpg.Pool, room: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT rate_per_s, rate_mode, rate_min_per_s, rate_max_per_s, target_p99_ms, "
                            "target_error_rate, version FROM rooms WHERE room_id = $1", room)
    return dict(row) if row else {}


async def test_auto_settings_are_recorded_copied_and_shown(adm: Any, admin_headers: Any, adm_settings: Settings,
                                                           redis_client: Any, db: asyncpg.Pool) -> None:
    keys = RedisKeys(adm_settings.redis_key_prefix)
    body = await put_room(adm, admin_headers, "r1", **AUTO)
    assert (body["rate_mode"], body["rate_per_s"], body["rate_min_per_s"], body["rate_max_per_s"],
            body["target_p99_ms"], body["target_error_rate"], body["rate_current_per_s"]) == (
        "auto", 10.0, 2.0, 40.0, 500, 0.02, 10.0)
    record = await _record(db, "r1")
    assert (record["rate_mode"], record["rate_min_per_s"], record["rate_max_per_s"], record["target_p99_ms"],
            record["target_error_rate"]) == ("auto", 2.0, 40.0, 500, 0.02)
    cfg = await _cfg(redis_client, keys, "r1")
    assert (cfg["rate_mode"], cfg["rate"], cfg["rate_start"], cfg["rate_min"], cfg["rate_max"], cfg["p99_ms"],
            cfg["err_rate"]) == ("auto", "10.0", "10.0", "2.0", "40.0", "500", "0.02")
    # a fixed room: the defaults, no bounds
    fixed = await put_room(adm, admin_headers, "r2", event_id="8")
    assert (fixed["rate_mode"], fixed["rate_min_per_s"], fixed["rate_max_per_s"], fixed["target_p99_ms"],
            fixed["target_error_rate"]) == ("fixed", None, None, 1000, 0.01)
    listed = await (await adm.get("/admin/rooms", headers=admin_headers)).json()
    assert {r["room"]: r["rate_mode"] for r in listed["items"]} == {"r1": "auto", "r2": "fixed"}


@pytest.mark.parametrize("bad", [
    {"rate_mode": "auto", "rate_min_per_s": 2},                                   # no maximum
    {"rate_mode": "auto", "rate_max_per_s": 20},                                  # no minimum
    {"rate_mode": "auto", "rate_min_per_s": 6, "rate_max_per_s": 20},             # start (5) below the minimum
    {"rate_mode": "auto", "rate_min_per_s": 1, "rate_max_per_s": 4},              # start (5) above the maximum
    {"rate_min_per_s": 9, "rate_max_per_s": 3},                                   # min above max
    {"rate_mode": "sometimes"},
    {"rate_min_per_s": 0},
    {"target_p99_ms": 5},
    {"target_error_rate": 0},
    {"target_error_rate": 0.9},
])
async def test_bad_auto_settings_are_422_and_change_nothing(adm: Any, admin_headers: Any, adm_settings: Settings,
                                                            redis_client: Any, db: asyncpg.Pool,
                                                            bad: dict[str, Any]) -> None:
    keys = RedisKeys(adm_settings.redis_key_prefix)
    await put_room(adm, admin_headers, "r1")
    before = (await _record(db, "r1"), await _cfg(redis_client, keys, "r1"))
    payload = {"opens_at": "2020-01-01T00:00:00Z", "rate_per_s": 5, "max_active": 100, "event_id": "7", **bad}
    for resp in (await adm.put("/admin/rooms/r1", json=payload, headers=admin_headers),
                 await adm.patch("/admin/rooms/r1", json=bad, headers=admin_headers),
                 await adm.put("/admin/rooms/r9", json={**payload, "event_id": "99"}, headers=admin_headers)):
        assert resp.status in (400, 422) and resp.content_type == PROBLEM, await resp.text()
    assert (await _record(db, "r1"), await _cfg(redis_client, keys, "r1")) == before
    assert await _record(db, "r9") == {} and await _cfg(redis_client, keys, "r9") == {}


async def test_patching_rate_per_s_out_of_an_auto_rooms_bounds_is_refused(adm: Any, admin_headers: Any,
                                                                          db: asyncpg.Pool) -> None:
    await put_room(adm, admin_headers, "r1", **AUTO)
    before = await _record(db, "r1")
    resp = await adm.patch("/admin/rooms/r1", json={"rate_per_s": 50}, headers=admin_headers)
    assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "$.rate_per_s"
    resp = await adm.patch("/admin/rooms/r1", json={"rate_max_per_s": None}, headers=admin_headers)
    assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "$.rate_max_per_s"
    assert await _record(db, "r1") == before


async def test_the_auto_rate_survives_admin_writes_and_restarts_from_rate_per_s(
        adm: Any, admin_headers: Any, adm_settings: Settings, redis_client: Any, db: asyncpg.Pool) -> None:
    keys = RedisKeys(adm_settings.redis_key_prefix)
    store = AutoRateStore(adm.app[ADMIN].rooms.calls, keys)
    await put_room(adm, admin_headers, "r1", **AUTO)
    assert await store.set_rate("r1", 1, b"10.0", 7.0) == "applied"  # a controller's step
    assert await store.set_rate("r1", 1, b"7.0", 4.9) == "stale_period"  # once per period
    assert await store.set_rate("r1", 2, b"10.0", 4.9) == "changed"  # computed from an older rate

    async def current() -> float:
        return float((await _cfg(redis_client, keys, "r1"))["rate"])

    view = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
    assert (view["rate_per_s"], view["rate_current_per_s"]) == (10.0, 7.0)
    assert (await _record(db, "r1"))["rate_per_s"] == 10.0  # the organizer's rate is not the controller's
    # an unrelated change keeps the controller's rate; new bounds move it within them
    assert (await adm.patch("/admin/rooms/r1", json={"title": "Tour"}, headers=admin_headers)).status == 200
    assert await current() == 7.0
    assert (await adm.patch("/admin/rooms/r1", json={"rate_max_per_s": 12, "rate_min_per_s": 8},
                            headers=admin_headers)).status == 200
    assert await current() == 8.0
    # a new starting rate starts there
    assert (await adm.patch("/admin/rooms/r1", json={"rate_per_s": 11}, headers=admin_headers)).status == 200
    assert await current() == 11.0
    assert await store.set_rate("r1", 3, b"11.0", 9.0) == "applied"
    # Redis loses the room: the rebuild starts from rate_per_s again
    await redis_client.unlink(keys.room_config("r1"), keys.room_state("r1"))
    await adm.app[ADMIN].durable.restore("r1")
    assert await current() == 11.0
    # back to fixed: the rate is rate_per_s, and steps are refused
    assert (await adm.patch("/admin/rooms/r1", json={"rate_mode": "fixed"}, headers=admin_headers)).status == 200
    assert await current() == 11.0
    assert await store.set_rate("r1", 4, b"11.0", 5.0) == "not_auto"
    assert await current() == 11.0


async def _replica(redis_url: str, keys: RedisKeys, law: RateLaw) -> tuple[AutoRate, redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(redis_url)
    scripts = LuaScripts(client)
    await scripts.load_all()
    calls = RedisCalls.batched(client, scripts)
    return AutoRate(AutoRateStore(calls, keys), ShopHealthReader(calls, keys), AdmissionMetrics(), law), client


async def test_three_controllers_take_the_same_steps_as_one(adm_settings: Settings, redis_url: str,
                                                            redis_client: Any) -> None:
    """Two identical rooms under the same shop health, one watched by one controller, the other by
    three racing each other: every period both rooms end at the same rate."""
    keys = RedisKeys(adm_settings.redis_key_prefix)
    law = RateLaw(period_s=1.0, window_s=1, min_requests=10)
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    calls = RedisCalls.batched(redis_client, scripts)
    for room in ("solo", "trio"):
        await RoomStore(calls, keys).put(room_config(room, rate_mode="auto", rate_per_s=10.0, rate_min_per_s=2.0,
                                                     rate_max_per_s=40.0, target_p99_ms=500), T0)
    one = await _replica(redis_url, keys, law)
    three = [await _replica(redis_url, keys, law) for _ in range(3)]
    clock = [0.0]
    recorder = ShopHealthRecorder(calls, keys, clock=lambda: clock[0])
    t0 = int(time.time()) * 1000
    trail: list[tuple[float, float]] = []
    try:
        for period in range(1, 31):
            slow = period <= 8 or 20 <= period <= 22
            now_ms = t0 + period * 1000 + 500
            clock[0] = now_ms / 1000 - 1  # the second before: the window the controllers read
            for room in ("solo", "trio"):
                for i in range(50):
                    recorder.record(room, 0.9 if slow and i % 10 == 0 else 0.02, failed=False)
            await recorder.flush()
            await one[0].control("solo", now_ms, WAITING)
            await asyncio.gather(*(r.control("trio", now_ms, WAITING) for r, _ in three))
            trail.append((float((await _cfg(redis_client, keys, "solo"))["rate"]),
                          float((await _cfg(redis_client, keys, "trio"))["rate"])))
    finally:
        for _, client in (one, *three):
            await client.aclose()
    assert [s for s, _ in trail] == [t for _, t in trail], trail
    rates = [s for s, _ in trail]
    assert rates[:8] == [7.0, 4.9, 3.43, 2.401, 2.0, 2.0, 2.0, 2.0]  # x0.7 a period, down to the minimum
    assert rates[8:19] == [float(r) for r in range(4, 25, 2)]  # +2/s (5 % of the maximum) a period
    assert rates[19:22] == [16.8, 11.76, 8.232]  # backs off again
    assert rates[22:] == pytest.approx([8.232 + 2 * i for i in range(1, 9)])  # and recovers again

    def steps(replica: AutoRate) -> float:
        return sum(s.value for m in replica.metrics.admission_rate_steps_total.collect() for s in m.samples
                   if s.name.endswith("_total"))
    assert steps(one[0]) == sum(steps(r) for r, _ in three) > 20
