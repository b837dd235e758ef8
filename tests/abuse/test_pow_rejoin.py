"""Proof of work on rejoin, through the real services, hot path on and off: only a token that
still holds a live place skips the proof of work; a token whose place is gone (dropped as an
abandoned tab, a finished shopper session) rejoins as a new visitor joins, with a solution; an
evicted visitor's token gets no place at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stagedoor.pow import solve
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from tests.support.rooms import put_room

HOT = pytest.mark.parametrize("hot", [True, False], ids=["hot", "aiohttp"])


async def _solution(wr: Any, headers: dict[str, str] | None = None) -> dict[str, str]:
    resp = await wr.get("/api/rooms/r1/pow", headers=headers)
    assert resp.status == 200, await resp.text()
    ch = await resp.json()
    return {"challenge": ch["challenge"], "nonce": solve(ch["challenge"], ch["difficulty"])}


async def _join(wr: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    resp = await wr.post("/api/rooms/r1/join", json=body, headers=headers)
    return resp.status, await resp.json()


async def _redis_room(redis: Any, keys: RedisKeys) -> tuple[int, int, bytes | None]:
    """(waiting, active, visitors ever numbered)."""
    return (await redis.zcard(keys.room_waiting("r1")), await redis.zcard(keys.room_active("r1")),
            await redis.hget(keys.room_state("r1"), "seq"))


@HOT
async def test_a_token_whose_place_is_gone_must_solve_the_proof_of_work_and_a_live_one_need_not(
        hot: bool, service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str],
        redis_client: Any) -> None:
    settings = make_settings(rate_limits_enabled=False, hot_http=hot)
    wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
    keys = RedisKeys(settings.redis_key_prefix)
    await put_room(adm, admin_headers, paused=True, pow_difficulty=6)
    status, first = await _join(wr, {"pow": await _solution(wr)})
    assert status == 201
    bearer = {"Authorization": f"Bearer {first['queue_token']}"}
    wr.session.cookie_jar.clear()
    status, second = await _join(wr, {"pow": await _solution(wr)})
    assert status == 201 and second["position"] == 2
    wr.session.cookie_jar.clear()  # tokens are presented explicitly below

    # a live place: the same place, 200, no proof of work asked (nor spent when sent)
    status, again = await _join(wr, {}, bearer)
    assert (status, again["visitor_id"], again["position"]) == (200, first["visitor_id"], 1)

    # the admission tick drops the first fan as an abandoned tab (what lua/admit_batch.lua does
    # to a silent visitor: off the waiting set, counted)
    assert await redis_client.zrem(keys.room_waiting("r1"), first["visitor_id"]) == 1
    before = await _redis_room(redis_client, keys)
    for headers in (bearer, {"Cookie": f"sdq_r1={first['queue_token']}"}):
        status, problem = await _join(wr, {}, headers)
        assert (status, problem["type"]) == (403, "/problems/pow-required"), headers
    assert await _redis_room(redis_client, keys) == before  # nothing was written
    status, problem = await _join(wr, {"pow": {"challenge": "v1.forged.x", "nonce": "1"}}, bearer)
    assert status == 403 and problem["type"] == "/problems/pow-invalid", problem
    assert await _redis_room(redis_client, keys) == before

    solution = await _solution(wr, bearer)
    status, back = await _join(wr, {"pow": solution}, bearer)
    assert (status, back["visitor_id"], back["position"]) == (201, first["visitor_id"], 2)  # at the back
    status, problem = await _join(wr, {"pow": solution}, {"Authorization": f"Bearer {second['queue_token']}"})
    assert status == 200  # a live place: the solution is not even looked at
    wr.session.cookie_jar.clear()
    status, problem = await _join(wr, {"pow": solution})
    assert (status, problem["type"]) == (403, "/problems/pow-replayed")  # spent by the rejoin above


@HOT
async def test_a_finished_shopper_rejoining_with_the_old_token_must_solve_the_proof_of_work(
        hot: bool, service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str],
        redis_client: Any) -> None:
    settings = make_settings(rate_limits_enabled=False, hot_http=hot)
    wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
    keys = RedisKeys(settings.redis_key_prefix)
    await put_room(adm, admin_headers, pow_difficulty=6, mode="passthrough")
    status, joined = await _join(wr, {"pow": await _solution(wr)})
    assert status == 201 and joined["state"] == "admitted"  # passthrough: admitted at once
    bearer = {"Authorization": f"Bearer {joined['queue_token']}"}
    status, again = await _join(wr, {}, bearer)
    assert (status, again["state"]) == (200, "admitted")  # a live shopper session: no proof of work
    await redis_client.zrem(keys.room_active("r1"), joined["visitor_id"])  # the session ended
    before = await _redis_room(redis_client, keys)
    status, problem = await _join(wr, {}, bearer)
    assert (status, problem["type"]) == (403, "/problems/pow-required")
    assert await _redis_room(redis_client, keys) == before
    status, rejoined = await _join(wr, {"pow": await _solution(wr, bearer)}, bearer)
    assert status == 201 and rejoined["visitor_id"] == joined["visitor_id"]


@HOT
async def test_an_evicted_visitor_rejoining_with_the_old_token_gets_no_place_and_must_solve_like_anyone(
        hot: bool, service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str],
        redis_client: Any) -> None:
    settings = make_settings(rate_limits_enabled=False, hot_http=hot)
    wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
    keys = RedisKeys(settings.redis_key_prefix)
    await put_room(adm, admin_headers, paused=True, pow_difficulty=6)
    status, bot = await _join(wr, {"pow": await _solution(wr)})
    assert status == 201
    bearer = {"Authorization": f"Bearer {bot['queue_token']}"}
    evicted = await adm.delete(f"/admin/rooms/r1/visitors/{bot['visitor_id']}", headers=admin_headers)
    assert evicted.status == 204
    before = await _redis_room(redis_client, keys)
    for body in ({}, {"pow": await _solution(wr, bearer)}):  # a solution does not undo an eviction
        for headers in (bearer, {"Cookie": f"sdq_r1={bot['queue_token']}"}):
            status, problem = await _join(wr, body, headers)
            assert (status, problem["type"]) == (401, "/problems/visitor-evicted"), (body, headers)
    assert await _redis_room(redis_client, keys) == before
    wr.session.cookie_jar.clear()
    status, problem = await _join(wr, {})  # dropping the token: a new visitor, who must solve
    assert (status, problem["type"]) == (403, "/problems/pow-required")
    assert await _redis_room(redis_client, keys) == before
    status, fresh = await _join(wr, {"pow": await _solution(wr)})
    assert status == 201 and fresh["visitor_id"] != bot["visitor_id"]
