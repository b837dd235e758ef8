"""Abandonment judged on fans' heartbeats only, over HTTP: the waiting room being up and able to
write to Redis hears nobody, so an outage of the fans' way in (ingress, CDN) drops nobody; fans
heard through a whole window get the silent ones dropped; a poll refused by the rate limit is
still its fan's heartbeat."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from tests.support.rooms import put_room

ABANDON_AFTER_S = 4  # the window: this bucket and the one before (5 s buckets)


async def _join_fans(wr: Any, n: int) -> list[dict[str, str]]:
    bearers = []
    for _ in range(n):
        wr.session.cookie_jar.clear()
        joined = await wr.post("/api/rooms/r1/join", json={})
        assert joined.status == 201
        bearers.append({"Authorization": f"Bearer {(await joined.json())['queue_token']}"})
    wr.session.cookie_jar.clear()
    return bearers


async def _room(adm: Any, admin_headers: dict[str, str]) -> tuple[int, int, int]:
    room = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
    return room["waiting"], room["abandoned_total"], room["admitted_total"]


@pytest.mark.slow
async def test_no_fan_heard_for_longer_than_abandon_after_drops_nobody_then_only_the_silent_are_dropped(
        service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str],
        redis_client: Any) -> None:
    # The waiting room and Redis are up all along; the fans cannot reach us for 11 s (an ingress
    # or CDN outage): nothing of that time is heard, so when admission resumes nobody is taken for
    # a closed tab. Then two of the three fans get through again; the first in line does not (the
    # tab was closed meanwhile): it holds the line until the others have been heard through a
    # whole window, and is then the only one dropped.
    settings = make_settings(rate_limits_enabled=False, admission_tick_ms=50)
    wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
    keys = RedisKeys(settings.redis_key_prefix)
    await put_room(adm, admin_headers, paused=True, rate_per_s=100, abandon_after_s=ABANDON_AFTER_S)
    silent, *back = await _join_fans(wr, 3)
    for _ in range(3):
        for bearer in (silent, *back):
            assert (await wr.get("/api/rooms/r1/status", headers=bearer)).status == 200
        await asyncio.sleep(0.5)
    await asyncio.sleep(11)  # the outage: no fan reaches the waiting room
    resumed = await adm.patch("/admin/rooms/r1", json={"paused": False}, headers=admin_headers)
    assert resumed.status == 200
    await asyncio.sleep(1.5)  # thirty ticks
    assert await _room(adm, admin_headers) == (3, 0, 0)
    assert 'admission_unheard_stops_total{room="r1"}' in await (await adm.get("/metrics")).text()
    assert await redis_client.zcard(keys.room_active("r1")) == 0

    states: list[str] = []
    for _ in range(40):  # the two fans' pages poll again
        states = [(await (await wr.get("/api/rooms/r1/status", headers=b)).json())["state"] for b in back]
        if states == ["admitted", "admitted"]:
            break
        await asyncio.sleep(0.5)
    assert states == ["admitted", "admitted"]
    assert await _room(adm, admin_headers) == (0, 1, 2)
    assert (await (await wr.get("/api/rooms/r1/status", headers=silent)).json())["state"] == "expired"


@pytest.mark.slow
@pytest.mark.parametrize("hot", [True, False], ids=["hot", "aiohttp"])
async def test_polls_refused_by_the_rate_limit_still_keep_their_fans_places(
        hot: bool, service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str]) -> None:
    # Three fans behind one address (a campus, a carrier NAT) share its per-IP status bucket of 2:
    # nearly every poll of theirs gets a 429. Each poll is still their heartbeat. A fourth fan
    # closed the tab after joining. When admission resumes, the three are admitted and only the
    # closed tab is dropped (before, their 429s were silence and all four were dropped).
    settings = make_settings(rate_limit_status_per_ip="2/60s", admission_tick_ms=50, hot_http=hot)
    wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
    await put_room(adm, admin_headers, paused=True, rate_per_s=100, abandon_after_s=ABANDON_AFTER_S)
    polling = await _join_fans(wr, 3)
    await _join_fans(wr, 1)  # the closed tab: joined, never polled
    statuses: list[int] = []
    for _ in range(12):  # 12 s: the joins' heartbeats leave the window
        for bearer in polling:
            resp = await wr.get("/api/rooms/r1/status", headers=bearer)
            statuses.append(resp.status)
            if resp.status == 429:
                assert resp.headers["Retry-After"] and (await resp.json())["type"] == "/problems/rate-limited"
        await asyncio.sleep(1.0)
    assert statuses[:2] == [200, 200] and set(statuses[2:]) == {429}
    await adm.patch("/admin/rooms/r1", json={"paused": False}, headers=admin_headers)
    for _ in range(40):
        room = await _room(adm, admin_headers)
        if room[0] == 0:
            break
        await asyncio.sleep(0.1)
    assert room == (0, 1, 3)
