"""Proof of work: missing, invalid, replayed, expired and other-room solutions are refused; a valid one is accepted."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as redis_asyncio
from aiohttp import web

from stagedoor import pow as pow_
from stagedoor.embedded import EmbeddedRedis
from stagedoor.errors import DependencyUnavailable, ValidationFailed
from stagedoor.metrics import BaseMetrics
from stagedoor.openapi import Api
from stagedoor.pow import (
    PowChallenge,
    PowExpired,
    PowRefused,
    PowReplayed,
    PowRequired,
    PowSolution,
    PowStore,
    PowWrongRoom,
    check_solution,
    derive_key,
    issue_challenge,
    issue_for_app,
    solve,
    verify_for_app,
    verify_solution,
)
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import TEMPLATES_DIR, Settings
from stagedoor.web import base_app, decode_body, decode_json, json_response
from tests.support.abuse import POW_DIFFICULTY, wrong_nonce

KEY = derive_key("a-test-secret-of-enough-length-000000")
NOW = 1_800_000_000_000
D = POW_DIFFICULTY


def solved(room: str = "room-a", subject: str | None = None, difficulty: int = D, now_ms: int = NOW,
           ttl_s: int = 60) -> tuple[PowChallenge, PowSolution]:
    ch = issue_challenge(KEY, room=room, difficulty=difficulty, now_ms=now_ms, ttl_s=ttl_s, subject=subject)
    return ch, PowSolution(challenge=ch.challenge, nonce=solve(ch.challenge, ch.difficulty))


@pytest.fixture
def store(redis_client: redis_asyncio.Redis, redis_prefix: str) -> PowStore:
    return PowStore(redis_client, RedisKeys(redis_prefix))


# ---------------------------------------------------------------- the checks, one by one

async def test_a_valid_solution_is_accepted_once(store: PowStore, redis_client: Any, redis_prefix: str) -> None:
    _, sol = solved(subject="visitor-1")
    proof = await verify_solution(KEY, store, sol, room="room-a", min_difficulty=D, now_ms=NOW + 1000,
                                  subject="visitor-1")
    assert (proof.room, proof.subject, proof.difficulty) == ("room-a", "visitor-1", D)
    spent = RedisKeys(redis_prefix).pow_spent("room-a", proof.challenge_id)
    assert spent.startswith(f"{redis_prefix}:{{room:room-a}}:pow:")
    assert 0 < await redis_client.pttl(spent) <= 60_000  # expires with the challenge (+1 s)
    with pytest.raises(PowReplayed):
        await verify_solution(KEY, store, sol, room="room-a", min_difficulty=D, now_ms=NOW + 2000)


async def test_a_missing_solution_is_refused(store: PowStore) -> None:
    with pytest.raises(PowRequired) as err:
        await verify_solution(KEY, store, None, room="room-a", min_difficulty=D, now_ms=NOW)
    assert err.value.extra["difficulty"] == D


async def test_a_wrong_nonce_is_refused_and_spends_nothing(store: PowStore) -> None:
    ch, sol = solved()
    wrong = wrong_nonce(ch.challenge)
    with pytest.raises(PowRefused, match="does not solve"):
        await verify_solution(KEY, store, PowSolution(challenge=ch.challenge, nonce=wrong),
                              room="room-a", min_difficulty=D, now_ms=NOW)
    await verify_solution(KEY, store, sol, room="room-a", min_difficulty=D, now_ms=NOW)  # still unspent


async def test_an_expired_challenge_is_refused(store: PowStore) -> None:
    _, sol = solved(ttl_s=30)
    with pytest.raises(PowExpired):
        await verify_solution(KEY, store, sol, room="room-a", min_difficulty=D, now_ms=NOW + 30_001)


async def test_another_rooms_challenge_is_refused(store: PowStore) -> None:
    _, sol = solved(room="room-b")
    with pytest.raises(PowWrongRoom):
        await verify_solution(KEY, store, sol, room="room-a", min_difficulty=D, now_ms=NOW)


async def test_another_visitors_challenge_is_refused(store: PowStore) -> None:
    _, sol = solved(subject="visitor-1")
    with pytest.raises(PowRefused, match="another visitor"):
        await verify_solution(KEY, store, sol, room="room-a", min_difficulty=D, now_ms=NOW, subject="visitor-2")


def test_a_challenge_below_the_rooms_current_difficulty_is_refused() -> None:
    _, sol = solved(difficulty=4)
    with pytest.raises(PowRefused, match="below the room's 8"):
        check_solution(KEY, sol, room="room-a", min_difficulty=8, now_ms=NOW)
    _, harder = solved(difficulty=10)
    assert check_solution(KEY, harder, room="room-a", min_difficulty=8, now_ms=NOW).difficulty == 10


def test_forged_and_tampered_challenges_are_refused() -> None:
    ch, _ = solved()
    other_key = derive_key("someone-else")
    forged = issue_challenge(other_key, room="room-a", difficulty=0, now_ms=NOW, ttl_s=60)
    version, payload, mac = ch.challenge.split(".")
    easier = msgspec.json.decode(pow_._unb64(payload))
    easier["d"] = 0
    tampered = f"{version}.{pow_._b64(msgspec.json.encode(easier))}.{mac}"
    for challenge in (forged.challenge, tampered, ch.challenge[:-2] + "AA", "v1.x.y", "v2." + ch.challenge[3:],
                      ch.challenge + "."):
        with pytest.raises(PowRefused):
            check_solution(KEY, PowSolution(challenge=challenge, nonce="0"), room="room-a", min_difficulty=0,
                           now_ms=NOW)


def test_solutions_are_strictly_typed() -> None:
    for body in (b'{"challenge": "v1.a.b", "nonce": "12x"}', b'{"challenge": "v1.a.b", "nonce": "1", "x": 1}',
                 b'{"challenge": "' + b"a" * 600 + b'", "nonce": "1"}', b'{"nonce": "1"}'):
        with pytest.raises(ValidationFailed):
            decode_json(body, PowSolution)


def test_form_posted_solutions_are_typed_too() -> None:
    _, sol = solved()
    assert pow_.solution_from_form({"pow_challenge": sol.challenge, "pow_nonce": sol.nonce}) == sol
    assert pow_.solution_from_form({}) is None
    assert pow_.solution_from_form({"pow_challenge": "", "pow_nonce": ""}) is None
    for bad in ({"pow_challenge": sol.challenge}, {"pow_challenge": sol.challenge, "pow_nonce": "1; drop"},
                {"pow_challenge": "x" * 600, "pow_nonce": "1"}):
        with pytest.raises(ValidationFailed):
            pow_.solution_from_form(bad)


def test_difficulty_is_bounded() -> None:
    with pytest.raises(ValueError):
        issue_challenge(KEY, room="r", difficulty=pow_.MAX_DIFFICULTY + 1, now_ms=NOW, ttl_s=60)


async def test_redis_down_refuses_the_join_rather_than_allow_replays(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    client = redis_asyncio.Redis.from_url(server.url, socket_connect_timeout=0.5)
    server.stop()
    try:
        _, sol = solved()
        with pytest.raises(DependencyUnavailable):
            await verify_solution(KEY, PowStore(client, RedisKeys("t")), sol, room="room-a", min_difficulty=D,
                                  now_ms=NOW)
    finally:
        await client.aclose()


# ---------------------------------------------------------------- over HTTP, as the waiting room will use it

class JoinBody(msgspec.Struct, forbid_unknown_fields=True):
    pow: PowSolution | None = None


def pow_app(settings: Settings, difficulty: int) -> web.Application:
    api = Api(tag="test")

    @api.get("/api/rooms/{room}/pow", summary="challenge", response=PowChallenge)
    async def challenge(request: web.Request) -> web.Response:
        return json_response(issue_for_app(request.app, request.match_info["room"], difficulty))

    @api.post("/api/rooms/{room}/join", summary="join", body=JoinBody, status=201, errors=(403,))
    async def join(request: web.Request) -> web.Response:
        body = await decode_body(request, JoinBody)
        proof = await verify_for_app(request.app, body.pow, room=request.match_info["room"],
                                     min_difficulty=difficulty)
        return json_response({"visitor_id": proof.subject}, status=201)

    return base_app(settings, BaseMetrics("powtest"), [api], title="pow test", uses_db=False)


async def test_join_over_http(aiohttp_client: Any, abuse_settings: Callable[..., Settings]) -> None:
    client = await aiohttp_client(pow_app(abuse_settings(), difficulty=D))
    ch = await (await client.get("/api/rooms/room-a/pow")).json()
    assert ch["difficulty"] == D and ch["algorithm"] == "sha256-leading-zero-bits" and ch["expires_at"].endswith("Z")
    sol = {"challenge": ch["challenge"], "nonce": solve(ch["challenge"], D)}

    async def problem(path: str, body: dict[str, Any]) -> str:
        resp = await client.post(path, json=body)
        assert resp.status == 403 and resp.content_type == "application/problem+json"
        return (await resp.json())["type"]

    assert await problem("/api/rooms/room-a/join", {}) == "/problems/pow-required"
    assert await problem("/api/rooms/room-b/join", {"pow": sol}) == "/problems/pow-wrong-room"
    bad = {**sol, "nonce": wrong_nonce(sol["challenge"])}
    assert await problem("/api/rooms/room-a/join", {"pow": bad}) == "/problems/pow-invalid"
    ok = await client.post("/api/rooms/room-a/join", json={"pow": sol})
    assert ok.status == 201 and (await ok.json())["visitor_id"] == ch["subject"]
    assert await problem("/api/rooms/room-a/join", {"pow": sol}) == "/problems/pow-replayed"
    metrics = await (await client.get("/metrics")).text()
    for outcome in ("ok", "missing", "invalid", "replayed", "other_room"):
        assert f'stagedoor_pow_verifications_total{{app="powtest",outcome="{outcome}"}} 1.0' in metrics


# ---------------------------------------------------------------- the browser solver

@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_javascript_solver_finds_solutions_the_server_accepts(tmp_path: Path) -> None:
    ch = issue_challenge(KEY, room="room-a", difficulty=10, now_ms=NOW, ttl_s=60)
    harness = tmp_path / "run.js"
    harness.write_text(
        "require(process.argv[2]);\n"
        "(async () => {\n"
        "  const web = await StagedoorPow.solve(process.argv[3], 10);\n"
        "  const js = await StagedoorPow.solve(process.argv[3], 10, {useWebCrypto: false});\n"
        "  console.log(web + ' ' + js);\n"
        "})();\n")
    out = subprocess.run(["node", str(harness), str(TEMPLATES_DIR / "static" / "pow.js"), ch.challenge],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out[0] == out[1] == solve(ch.challenge, 10)
    for nonce in out:
        check_solution(KEY, PowSolution(challenge=ch.challenge, nonce=nonce), room="room-a", min_difficulty=10,
                       now_ms=NOW)
