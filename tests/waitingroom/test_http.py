"""The waiting room over real HTTP: join, status, tokens, SSE, the queue page, bad input."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import signal
import time
from typing import Any

import jwt
import pytest
import redis.asyncio as redis_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stagedoor import edge
from stagedoor.admission_tokens import ADMISSION_AUDIENCE, AdmissionRequired, verify_admission_token
from stagedoor.embedded import EmbeddedRedis
from stagedoor.keys import InvalidToken, KeyRing
from stagedoor.queue_tokens import mint_queue_token
from stagedoor.settings import Settings
from tests.support.rooms import PROBLEM, iso, put_room
from waitingroom.queue import StatusOut
from waitingroom.routes import SSE_CHECK_MAX_S, next_check_s


async def test_join_gives_a_place_a_token_and_a_cookie_and_rejoining_keeps_it(clients: Any,
                                                                             admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    resp = await wr.post("/api/rooms/r1/join", json={})
    assert resp.status == 201
    body = await resp.json()
    assert body["state"] == "waiting" and body["position"] == 1 and body["eta_s"] is None  # paused: no ETA
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "sdq_r1=" in cookie
    other = await wr.post("/api/rooms/r1/join", json={}, headers={"Cookie": ""})
    # the test client keeps cookies: the second call re-presented the first visitor's cookie
    assert other.status == 200 and (await other.json())["visitor_id"] == body["visitor_id"]
    wr.session.cookie_jar.clear()
    fresh = await wr.post("/api/rooms/r1/join", json={})
    assert fresh.status == 201 and (await fresh.json())["position"] == 2
    again = await wr.post("/api/rooms/r1/join", json={},
                          headers={"Authorization": f"Bearer {body['queue_token']}"})
    assert again.status == 200 and (await again.json())["position"] == 1
    status = await wr.get("/api/rooms/r1/status", headers={"Authorization": f"Bearer {body['queue_token']}"})
    got = await status.json()
    assert status.status == 200 and (got["state"], got["position"], got["ahead"], got["waiting_total"]) == (
        "waiting", 1, 0, 2)


async def test_the_queue_length_gauge_counts_each_rooms_waiting_visitors(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    await put_room(adm, admin_headers, room="r2", paused=True, event_id="8")
    for room in ("r1", "r1", "r1", "r2"):
        wr.session.cookie_jar.clear()  # a new fan each time (the cookie would make it a rejoin)
        assert (await wr.post(f"/api/rooms/{room}/join", json={})).status == 201
    expected = ('waitingroom_queue_length{room="r1"} 3.0', 'waitingroom_queue_length{room="r2"} 1.0')
    for _ in range(60):  # refreshed every 2 s
        text = await (await wr.get("/metrics")).text()
        if all(line in text for line in expected):
            break
        await asyncio.sleep(0.1)
    else:
        exported = [line for line in text.splitlines() if "queue_length{" in line]
        raise AssertionError(f"queue lengths not exported as expected: {exported}")


async def test_pre_queue_status_before_the_sale_starts(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, starts_at=iso(600))
    body = await (await wr.post("/api/rooms/r1/join", json={})).json()
    assert body["state"] == "pre_queue" and body["position"] is None and 590 <= body["eta_s"] <= 601
    status = await (await wr.get("/api/rooms/r1/status")).json()  # cookie
    assert status["state"] == "pre_queue" and status["starts_at"]


async def test_admitted_status_carries_a_verifiable_admission_token(clients: Any, admin_headers: Any,
                                                                   keyring: KeyRing) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, mode="passthrough", session_ttl_s=120)
    join = await (await wr.post("/api/rooms/r1/join", json={})).json()
    assert join["state"] == "admitted"
    status = await (await wr.get("/api/rooms/r1/status")).json()
    assert status["state"] == "admitted" and status["shop_url"] == "https://shop.example/e/7"
    claims = verify_admission_token(keyring, status["admission_token"], "7")
    assert (claims.visitor_id, claims.room, claims.event_id) == (join["visitor_id"], "r1", "7")
    assert 100 <= claims.exp - time.time() <= 121
    with pytest.raises(AdmissionRequired):
        verify_admission_token(keyring, status["admission_token"], "8")  # another event's shop
    jwks = await (await wr.get("/.well-known/jwks.json")).json()
    assert jwt.get_unverified_header(status["admission_token"])["kid"] in {k["kid"] for k in jwks["keys"]}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_admission_token_attacks_are_rejected(clients: Any, admin_headers: Any, keyring: KeyRing) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, mode="passthrough")
    good = (await (await wr.post("/api/rooms/r1/join", json={})).json())["admission_token"]
    header, payload, sig = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    tampered = f"{header}.{_b64({**claims, 'sub': 'someone-else'})}.{sig}"
    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    public_pem = keyring.jwks()["keys"][0]["x"]
    kid = jwt.get_unverified_header(good)["kid"]
    hs_switch = jwt.encode(claims, public_pem, algorithm="HS256", headers={"kid": kid})
    stranger = Ed25519PrivateKey.generate()
    unknown_kid = jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": "not-ours"})
    expired = keyring.sign({**claims, "exp": int(time.time()) - 1})
    wrong_aud = keyring.sign({**claims, "aud": "stagedoor-api"})
    for bad in (tampered, alg_none, hs_switch, unknown_kid, expired, wrong_aud, "garbage", good[:-3] + "AAA"):
        with pytest.raises(InvalidToken) as info:
            keyring.verify(bad, ADMISSION_AUDIENCE)
        assert info.value.code == "unauthorized" or isinstance(info.value, InvalidToken)
    assert keyring.verify(good, ADMISSION_AUDIENCE)["room"] == "r1"


async def test_queue_token_attacks_get_401_problems(clients: Any, admin_headers: Any, wr_settings: Settings) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers)
    await put_room(adm, admin_headers, room="r2", event_id="8")
    token = (await (await wr.post("/api/rooms/r1/join", json={})).json())["queue_token"]
    wr.session.cookie_jar.clear()
    other_room = (await (await wr.post("/api/rooms/r2/join", json={})).json())["queue_token"]
    wr.session.cookie_jar.clear()
    secret = wr_settings.queue_token_secret
    assert secret
    visitor = token.split(".")[1]
    old = mint_queue_token(secret, visitor_id=visitor, room="r1", now_s=int(time.time()) - 3 * 86_400)
    forged = mint_queue_token("not-the-secret", visitor_id=visitor, room="r1", now_s=int(time.time()))
    tampered = token.replace(visitor, "1_AAAAAA")
    for bad in (None, "", "garbage", tampered, forged, old, other_room, token + "x", "q1." + "a" * 300):
        headers = {"Authorization": f"Bearer {bad}"} if bad is not None else {}
        resp = await wr.get("/api/rooms/r1/status", headers=headers)
        assert resp.status == 401, bad
        assert resp.content_type == PROBLEM
        assert "WWW-Authenticate" in resp.headers
    ok = await wr.get("/api/rooms/r1/status", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200


async def test_evicted_visitors_tokens_stop_working(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    body = await (await wr.post("/api/rooms/r1/join", json={})).json()
    auth = {"Authorization": f"Bearer {body['queue_token']}"}
    assert (await wr.get("/api/rooms/r1/status", headers=auth)).status == 200
    resp = await adm.delete(f"/admin/rooms/r1/visitors/{body['visitor_id']}", headers=admin_headers)
    assert resp.status == 204
    assert (await wr.get("/api/rooms/r1/status", headers=auth)).status == 401
    assert (await wr.post("/api/rooms/r1/join", json={}, headers=auth)).status == 401
    assert (await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json())["waiting"] == 0


@pytest.mark.parametrize(("room_body", "status", "ptype"), [
    ({"mode": "closed"}, 409, "/problems/room-closed"),
    ({"closes_at": "2020-01-02T00:00:00Z", "opens_at": "2020-01-01T00:00:00Z",
      "starts_at": "2020-01-01T00:00:00Z"}, 409, "/problems/room-closed"),
    ({"opens_at": "2099-01-01T00:00:00Z", "starts_at": "2099-01-01T00:00:00Z"}, 409, "/problems/room-not-open"),
])
async def test_join_refusals_are_problems_and_change_nothing(clients: Any, admin_headers: Any, room_body: Any,
                                                            status: int, ptype: str) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, **room_body)
    resp = await wr.post("/api/rooms/r1/join", json={})
    assert resp.status == status and resp.content_type == PROBLEM
    assert (await resp.json())["type"] == ptype
    stats = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
    assert (stats["waiting"], stats["active"], stats["admitted_total"]) == (0, 0, 0)


async def test_sold_out_room_refuses_joins(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers)
    assert (await adm.patch("/admin/rooms/r1", json={"sold_out": True}, headers=admin_headers)).status == 200
    resp = await wr.post("/api/rooms/r1/join", json={})
    assert resp.status == 409 and (await resp.json())["type"] == "/problems/room-sold-out"


@pytest.mark.parametrize("path", ["/api/rooms/nope/join", "/api/rooms/NOT%20A%20ROOM/join",
                                  "/api/rooms/" + "x" * 100 + "/join"])
async def test_unknown_room_is_404(clients: Any, path: str) -> None:
    wr, _ = clients
    resp = await wr.post(path, json={})
    assert resp.status == 404 and resp.content_type == PROBLEM


async def test_bad_join_bodies_are_4xx(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers)
    assert (await wr.post("/api/rooms/r1/join", json={"surprise": 1})).status == 422
    assert (await wr.post("/api/rooms/r1/join", data="{", headers={"Content-Type": "application/json"})).status == 400
    assert (await wr.post("/api/rooms/r1/join", data="x", headers={"Content-Type": "text/plain"})).status == 415
    assert (await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json())["waiting"] == 0


async def _next_status(resp: Any, timeout_s: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            line = (await resp.content.readline()).decode().strip()
            if line.startswith("data:"):
                return json.loads(line[5:].strip())


async def _first_status_where(resp: Any, wanted: Any, timeout_s: float) -> dict[str, Any]:
    """Statuses pushed on the way (e.g. the 'resumed' push before the admission tick) are skipped."""
    async with asyncio.timeout(timeout_s):
        while True:
            status = await _next_status(resp, timeout_s)
            if wanted(status):
                return status


async def test_sse_pushes_admission_and_sold_out_within_a_second(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True, rate_per_s=100)
    first = await (await wr.post("/api/rooms/r1/join", json={})).json()
    wr.session.cookie_jar.clear()
    second = await (await wr.post("/api/rooms/r1/join", json={})).json()
    stream_a = await wr.get("/api/rooms/r1/events", headers={"Authorization": f"Bearer {first['queue_token']}"})
    stream_b = await wr.get("/api/rooms/r1/events", headers={"Authorization": f"Bearer {second['queue_token']}"})
    assert stream_a.headers["Content-Type"].startswith("text/event-stream")
    # the stream's head went out from the handler, not through the edge: its headers still did
    assert stream_a.headers["X-Content-Type-Options"] == "nosniff"
    assert stream_a.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert len(stream_a.headers["X-Request-Id"]) == 32
    assert (await _next_status(stream_a, 2))["state"] == "waiting"
    assert (await _next_status(stream_b, 2))["position"] == 2
    # admit exactly one: capacity 1, then resume
    await adm.patch("/admin/rooms/r1", json={"max_active": 1, "paused": False}, headers=admin_headers)
    admitted = await _first_status_where(stream_a, lambda s: s["state"] != "waiting", 2.5)
    assert admitted["state"] == "admitted" and admitted["admission_token"]
    moved = await _first_status_where(stream_b, lambda s: s["position"] != 2, 2.5)
    assert moved["position"] == 1 and moved["state"] == "waiting"
    started = time.monotonic()
    await adm.patch("/admin/rooms/r1", json={"sold_out": True}, headers=admin_headers)
    sold = await _first_status_where(stream_b, lambda s: s["state"] != "waiting", 2)
    assert sold["state"] == "sold_out" and time.monotonic() - started < 1.0
    stream_a.close()
    stream_b.close()


async def test_sse_tells_a_visitor_far_back_of_their_admission_within_a_second_or_two(
        clients: Any, admin_headers: Any) -> None:
    """A stream far back reads its own status only every few seconds; the room's pulse wakes
    it when its visitor is admitted, so the admission still arrives at once."""
    wr, adm = clients
    await put_room(adm, admin_headers, rate_per_s=100, max_active=1)
    occupant = await (await wr.post("/api/rooms/r1/join", json={})).json()
    bearer = {"Authorization": f"Bearer {occupant['queue_token']}"}
    for _ in range(60):  # admitted at once, or by the next admission tick
        if (await (await wr.get("/api/rooms/r1/status", headers=bearer)).json())["state"] == "admitted":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the first visitor was never admitted")
    # the shop is full now (max_active 1): everyone else waits
    ahead = []
    for _ in range(9):
        wr.session.cookie_jar.clear()
        ahead.append(await (await wr.post("/api/rooms/r1/join", json={})).json())
    wr.session.cookie_jar.clear()
    fan = await (await wr.post("/api/rooms/r1/join", json={})).json()
    stream = await wr.get("/api/rooms/r1/events", headers={"Authorization": f"Bearer {fan['queue_token']}"})
    first = await _next_status(stream, 2)
    assert first["state"] == "waiting" and first["position"] == 10
    assert next_check_s(StatusOut(**first)) == SSE_CHECK_MAX_S  # a long wait: its own reads are 4 s apart
    await asyncio.sleep(1.0)  # past the pulse's first round (which has every new stream read once more)
    for visitor in (occupant, *ahead):  # the shop empties and the queue ahead is gone: the fan is next
        resp = await adm.delete(f"/admin/rooms/r1/visitors/{visitor['visitor_id']}", headers=admin_headers)
        assert resp.status == 204
    started = time.monotonic()
    admitted = await _first_status_where(stream, lambda s: s["state"] != "waiting", 3.5)
    assert admitted["state"] == "admitted" and admitted["admission_token"]
    assert time.monotonic() - started < 2.0  # its own next read was 3-4 s away
    stream.close()


@pytest.mark.slow
async def test_an_open_stream_keeps_its_visitor_in_line_while_a_silent_visitor_is_dropped(
        clients: Any, admin_headers: Any) -> None:
    """A stream of a paused room reads its status only as often as its heartbeat needs (three
    times per abandon_after_s here, instead of every 0.5 s): its visitor keeps their place, while
    a visitor ahead who went silent is skipped as abandoned when admission resumes."""
    wr, adm = clients
    await put_room(adm, admin_headers, rate_per_s=100, max_active=1, abandon_after_s=4)
    occupant = await (await wr.post("/api/rooms/r1/join", json={})).json()
    bearer = {"Authorization": f"Bearer {occupant['queue_token']}"}
    for _ in range(60):
        if (await (await wr.get("/api/rooms/r1/status", headers=bearer)).json())["state"] == "admitted":
            break
        await asyncio.sleep(0.05)
    wr.session.cookie_jar.clear()
    silent = await (await wr.post("/api/rooms/r1/join", json={})).json()
    wr.session.cookie_jar.clear()
    fan = await (await wr.post("/api/rooms/r1/join", json={})).json()
    await adm.patch("/admin/rooms/r1", json={"paused": True}, headers=admin_headers)
    stream = await wr.get("/api/rooms/r1/events", headers={"Authorization": f"Bearer {fan['queue_token']}"})
    first = await _first_status_where(stream, lambda s: s.get("paused"), 3)
    assert first["position"] == 2
    assert next_check_s(StatusOut(**first), abandon_after_s=4) == pytest.approx(4 / 3)  # paused: heartbeat pace
    await asyncio.sleep(11)  # two whole 5 s heartbeat buckets without a sign of the silent visitor
    resp = await adm.delete(f"/admin/rooms/r1/visitors/{occupant['visitor_id']}", headers=admin_headers)
    assert resp.status == 204
    await adm.patch("/admin/rooms/r1", json={"paused": False}, headers=admin_headers)
    admitted = await _first_status_where(stream, lambda s: s["state"] != "waiting", 3)
    assert admitted["state"] == "admitted"
    gone = await wr.get("/api/rooms/r1/status", headers={"Authorization": f"Bearer {silent['queue_token']}"})
    assert (await gone.json())["state"] == "expired"  # skipped as abandoned, its place given up
    stream.close()


async def test_sse_without_a_token_is_401(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers)
    resp = await wr.get("/api/rooms/r1/events")
    assert resp.status == 401 and resp.content_type == PROBLEM


async def test_queue_page_works_without_javascript(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    page = await wr.get("/rooms/r1")
    html = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    assert '<form method="post" action="/rooms/r1">' in html
    joined = await wr.post("/rooms/r1", data={}, allow_redirects=False,
                           headers={"Origin": str(wr.make_url("")).rstrip("/")})
    assert joined.status == 303 and joined.headers["Location"] == "/rooms/r1"
    page = await wr.get("/rooms/r1")
    html = await page.text()
    assert 'http-equiv="refresh"' in html and 'id="position">1<' in html
    assert (await wr.get("/rooms/nope")).status == 404


async def test_queue_page_says_whether_the_room_requires_proof_of_work_and_carries_its_icon(
        clients: Any, admin_headers: Any) -> None:
    """The page's script asks for a challenge only when ``data-pow`` says the room requires one
    (one request per join otherwise); the tab icon is inline, so a page costs no icon request."""
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    html = await (await wr.get("/rooms/r1")).text()
    assert '<body data-room="r1" data-pow="0">' in html
    assert '<link rel="icon" type="image/svg+xml" href="data:image/svg+xml,' in html
    await put_room(adm, admin_headers, room="r2", event_id="8", pow_difficulty=6, paused=True)
    assert '<body data-room="r2" data-pow="6">' in await (await wr.get("/rooms/r2")).text()


async def test_queue_page_redirects_admitted_visitors_to_the_shop(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, mode="passthrough")
    await wr.post("/api/rooms/r1/join", json={})
    html = await (await wr.get("/rooms/r1")).text()
    assert 'content="0; url=https://shop.example/e/7#admission_token=' in html


async def test_metrics_count_joins_per_room(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    await wr.post("/api/rooms/r1/join", json={})
    await wr.post("/api/rooms/nope/join", json={})
    text = await (await wr.get("/metrics")).text()
    assert 'waitingroom_joins_total{result="new",room="r1"} 1.0' in text
    assert 'room="nope"' not in text


async def test_proof_of_work_rooms_require_a_fresh_solution_to_join(clients: Any, admin_headers: Any) -> None:
    from stagedoor.pow import solve

    wr, adm = clients
    await put_room(adm, admin_headers, pow_difficulty=4, paused=True)
    refused = await wr.post("/api/rooms/r1/join", json={})
    assert refused.status == 403 and refused.content_type == PROBLEM
    challenge = await (await wr.get("/api/rooms/r1/pow")).json()
    assert challenge["difficulty"] == 4
    solution = {"challenge": challenge["challenge"], "nonce": solve(challenge["challenge"], 4)}
    joined = await wr.post("/api/rooms/r1/join", json={"pow": solution})
    assert joined.status == 201
    wr.session.cookie_jar.clear()
    replay = await wr.post("/api/rooms/r1/join", json={"pow": solution})
    assert replay.status == 403
    await put_room(adm, admin_headers, room="r2", event_id="8")
    assert (await wr.get("/api/rooms/r2/pow")).status == 403  # no proof of work in this room
    assert (await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json())["waiting"] == 1


async def test_open_sse_streams_end_when_the_service_shuts_down(clients: Any, admin_headers: Any) -> None:
    """Shutdown does not wait out its timeout for streams: they end at once and the browser's
    EventSource reconnects (to another replica)."""
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    joined = await (await wr.post("/api/rooms/r1/join", json={})).json()
    stream = await wr.get("/api/rooms/r1/events", headers={"Authorization": f"Bearer {joined['queue_token']}"})
    assert (await _next_status(stream, 2))["state"] == "waiting"
    await wr.server.app.shutdown()  # what the runner does first on SIGTERM: on_shutdown signals
    rest = await asyncio.wait_for(stream.content.read(), 5)  # the server ends the stream: EOF
    assert b"event: status" not in rest
    stream.close()


async def test_the_queue_page_names_the_sale_by_the_rooms_title_as_text(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    room = await put_room(adm, admin_headers, paused=True, title="<b>Gala</b> & friends")
    assert room["title"] == "<b>Gala</b> & friends"
    html = await (await wr.get("/rooms/r1")).text()
    assert '<p class="event-name" id="event-name">&lt;b&gt;Gala&lt;/b&gt; &amp; friends</p>' in html
    cleared = await adm.patch("/admin/rooms/r1", json={"title": None}, headers=admin_headers)
    assert (await cleared.json())["title"] is None
    for _ in range(40):  # the waiting room caches a room's config for up to a second
        if 'id="event-name"' not in await (await wr.get("/rooms/r1")).text():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the cleared title is still shown")
    too_long = await adm.patch("/admin/rooms/r1", json={"title": "x" * 201}, headers=admin_headers)
    assert too_long.status == 422


async def test_a_lost_redis_is_503_to_retry_and_the_queue_answers_again_when_it_is_back(
        service_client: Any, make_settings: Any, admin_headers: Any, tmp_path: Any) -> None:
    # the waiting room's own Redis, stopped mid-sale: joins and polls get a 503 problem with
    # Retry-After (the queue page polls through it), not a 500 per request
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        settings = make_settings(redis_url=server.url, rate_limits_enabled=False, dependency_timeout_s=0.5)
        wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
        await put_room(adm, admin_headers, paused=True)
        joined = await (await wr.post("/api/rooms/r1/join", json={})).json()
        bearer = {"Authorization": f"Bearer {joined['queue_token']}"}
        server.stop()
        for resp in (await wr.post("/api/rooms/r1/join", json={}, headers=bearer),
                     await wr.get("/api/rooms/r1/status", headers=bearer)):
            assert resp.status == 503 and resp.content_type == PROBLEM
            assert resp.headers["Retry-After"] == "2"
            assert (await resp.json())["type"] == "/problems/redis-unavailable"
        restarted = EmbeddedRedis(tmp_path / "redis", port=server.port, persist=False).start()
        try:
            # the data went with it: the organizer sets the room again, retrying a 503 as its Retry-After says
            # (a connection that failed a moment ago is retried after a short backoff, not on every call)
            for _ in range(20):
                resp = await adm.put("/admin/rooms/r1", headers=admin_headers, json={
                    "opens_at": iso(-60), "starts_at": iso(-30), "rate_per_s": 5, "max_active": 100,
                    "shop_url": "https://shop.example/e/7", "event_id": "7", "paused": True})
                if resp.status != 503:
                    break
                assert resp.headers["Retry-After"] and (await resp.json())["type"] == "/problems/redis-unavailable"
                await asyncio.sleep(0.3)
            assert resp.status in (200, 201), await resp.text()
            statuses = []
            for _ in range(30):  # a pooled connection that died with the old server fails once: poll, as pages do
                resp = await wr.post("/api/rooms/r1/join", json={})
                statuses.append(resp.status)
                if resp.status == 201:
                    break
                await asyncio.sleep(0.1)
            assert statuses[-1] == 201 and set(statuses) <= {201, 503}
            assert (await resp.json())["state"] == "waiting"
        finally:
            restarted.stop()
    finally:
        server.stop()


@pytest.mark.slow
async def test_a_redis_outage_longer_than_abandon_after_drops_nobody(
        service_client: Any, make_settings: Any, admin_headers: Any, tmp_path: Any) -> None:
    # Redis frozen for 12-17 s (SIGSTOP: connections hang, requests time out), abandon_after_s 5:
    # no heartbeat of that time exists. When it is back and
    # admission resumes, the three fans who were polling before are not taken for closed tabs:
    # the controller holds the line until they are heard again, then admits them all. (The
    # freeze ends just after a 5 s heartbeat bucket begins: the window then holds a dark bucket
    # for the next 4.7 s; a window is judged by whole buckets.)
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    assert server.process is not None
    try:
        settings = make_settings(redis_url=server.url, rate_limits_enabled=False, dependency_timeout_s=0.5)
        wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
        await put_room(adm, admin_headers, paused=True, rate_per_s=100, abandon_after_s=5)
        bearers = []
        for _ in range(3):
            wr.session.cookie_jar.clear()
            joined = await (await wr.post("/api/rooms/r1/join", json={})).json()
            bearers.append({"Authorization": f"Bearer {joined['queue_token']}"})
        for _ in range(3):
            for bearer in bearers:
                assert (await wr.get("/api/rooms/r1/status", headers=bearer)).status == 200
            await asyncio.sleep(0.5)
        server.process.send_signal(signal.SIGSTOP)
        try:
            thaw_at = time.time() + 12  # longer than the whole window (two buckets: 10 s at most)
            thaw_at += (0.3 - thaw_at % 5) % 5  # 0.3 s into a bucket
            await asyncio.sleep(thaw_at - time.time())
        finally:
            server.process.send_signal(signal.SIGCONT)
        resumed = await adm.patch("/admin/rooms/r1", json={"paused": False}, headers=admin_headers)
        assert resumed.status == 200
        await asyncio.sleep(1.5)  # fifteen ticks: the old judgement dropped all three at the first
        room = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
        assert (room["waiting"], room["abandoned_total"], room["admitted_total"]) == (3, 0, 0)
        held = await (await adm.get("/metrics")).text()
        assert 'admission_unheard_stops_total{room="r1"}' in held
        states = []
        for bearer in bearers:  # the pages poll again: heard, then admitted at the next ticks
            states.append((await (await wr.get("/api/rooms/r1/status", headers=bearer)).json())["state"])
        assert states == ["waiting"] * 3
        for _ in range(40):
            room = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
            if room["admitted_total"] == 3:
                break
            await asyncio.sleep(0.1)
        assert (room["waiting"], room["abandoned_total"], room["admitted_total"]) == (0, 0, 3)
        for bearer in bearers:
            assert (await (await wr.get("/api/rooms/r1/status", headers=bearer)).json())["state"] == "admitted"
    finally:
        server.stop()


@pytest.mark.slow
async def test_a_closed_tab_in_a_room_gone_quiet_is_dropped_once_a_fan_is_heard_through_a_window(
        service_client: Any, make_settings: Any, admin_headers: Any) -> None:
    # nobody polls for 11 s (abandon_after_s 4) while the waiting room is up: that may be an
    # outage of the fans' way in, so the tab at the front is not judged yet. A new fan arrives
    # and polls as the page does; once a whole window has heard them, the closed tab is dropped
    # and the fan admitted
    settings = make_settings(rate_limits_enabled=False)
    wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
    await put_room(adm, admin_headers, paused=True, rate_per_s=100, abandon_after_s=4)
    closed_tab = await (await wr.post("/api/rooms/r1/join", json={})).json()
    await asyncio.sleep(11)
    wr.session.cookie_jar.clear()
    fan = await (await wr.post("/api/rooms/r1/join", json={})).json()
    assert fan["position"] == 2
    await adm.patch("/admin/rooms/r1", json={"paused": False}, headers=admin_headers)
    fan_bearer = {"Authorization": f"Bearer {fan['queue_token']}"}
    await asyncio.sleep(1.0)
    room = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
    assert (room["waiting"], room["abandoned_total"], room["admitted_total"]) == (2, 0, 0)  # held, not judged
    for _ in range(30):  # the page polls every 2 s; faster here
        state = (await (await wr.get("/api/rooms/r1/status", headers=fan_bearer)).json())["state"]
        if state == "admitted":
            break
        await asyncio.sleep(0.5)
    room = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
    assert (room["waiting"], room["abandoned_total"], room["admitted_total"]) == (0, 1, 1)
    gone = await wr.get("/api/rooms/r1/status", headers={"Authorization": f"Bearer {closed_tab['queue_token']}"})
    assert (await gone.json())["state"] == "expired"


@pytest.mark.parametrize("refusal", ["out-of-memory", "read-only"])
async def test_a_redis_refusing_writes_is_503_to_retry_and_changes_nothing(
        refusal: str, service_client: Any, make_settings: Any, admin_headers: Any, tmp_path: Any,
        caplog: Any, monkeypatch: Any) -> None:
    # Redis answering but refusing writes: full (maxmemory, noeviction: what ops/prometheus's
    # RedisMemoryHigh warns of) or a replica (mid-failover). Every join and poll of the crowd
    # meets it: a 503 problem with Retry-After and the reason, never a 500 with a traceback each
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(edge, "_redis_warned_at", float("-inf"))  # no earlier test's line counts
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    control = redis_asyncio.Redis.from_url(server.url)
    try:
        settings = make_settings(redis_url=server.url, rate_limits_enabled=False)
        wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
        await put_room(adm, admin_headers, paused=True)
        joined = await (await wr.post("/api/rooms/r1/join", json={})).json()
        bearer = {"Authorization": f"Bearer {joined['queue_token']}"}
        wr.session.cookie_jar.clear()  # the joins below are new visitors
        waiting_key = [k async for k in control.scan_iter(match="*r1*wait*")]
        assert len(waiting_key) == 1 and await control.zcard(waiting_key[0]) == 1
        if refusal == "out-of-memory":
            await control.config_set("maxmemory", 1)
        else:
            await control.execute_command("REPLICAOF", "127.0.0.1", "1")  # a master that is not there
        try:
            for resp in (await wr.post("/api/rooms/r1/join", json={}),
                         await wr.post("/api/rooms/r1/join", json={}),
                         await wr.get("/api/rooms/r1/status", headers=bearer)):
                assert resp.status == 503 and resp.content_type == PROBLEM
                assert resp.headers["Retry-After"] == "2"
                problem = await resp.json()
                assert problem["type"] == "/problems/redis-unavailable" and problem["reason"] == refusal
            assert await control.zcard(waiting_key[0]) == 1  # the refused joins queued nobody
        finally:
            if refusal == "out-of-memory":
                await control.config_set("maxmemory", 0)
            else:
                await control.execute_command("REPLICAOF", "NO", "ONE")
        status = await wr.get("/api/rooms/r1/status", headers=bearer)
        assert status.status == 200 and (await status.json())["position"] == 1
        again = await wr.post("/api/rooms/r1/join", json={})
        assert again.status == 201 and (await again.json())["position"] == 2
    finally:
        await control.aclose()
        server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.reason for r in caplog.records if r.getMessage() == "redis_unavailable"] == [refusal]  # type: ignore[attr-defined]


async def test_an_event_stream_meeting_a_redis_out_of_memory_ends_quietly_and_the_page_polls_on(
        service_client: Any, make_settings: Any, admin_headers: Any, tmp_path: Any, caplog: Any) -> None:
    # a stream's read is its visitor's heartbeat, a write: Redis refusing it ends the stream
    # without a state (the page falls back to polling /status, 503 until Redis takes writes
    # again), as an unreachable Redis does; no traceback
    caplog.set_level(logging.WARNING)
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    control = redis_asyncio.Redis.from_url(server.url)
    try:
        settings = make_settings(redis_url=server.url, rate_limits_enabled=False)
        wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
        await put_room(adm, admin_headers, paused=True, abandon_after_s=3)  # a stream reads every second
        joined = await (await wr.post("/api/rooms/r1/join", json={})).json()
        bearer = {"Authorization": f"Bearer {joined['queue_token']}"}
        stream = await wr.get("/api/rooms/r1/events", headers=bearer)
        assert (await _next_status(stream, 2))["state"] == "waiting"
        await control.config_set("maxmemory", 1)
        try:
            rest = await asyncio.wait_for(stream.content.read(), 5)  # the server ends the stream: EOF
            assert b"event: status" not in rest
            poll = await wr.get("/api/rooms/r1/status", headers=bearer)
            assert poll.status == 503 and (await poll.json())["reason"] == "out-of-memory"
        finally:
            await control.config_set("maxmemory", 0)
        poll = await wr.get("/api/rooms/r1/status", headers=bearer)
        assert poll.status == 200 and (await poll.json())["position"] == 1
    finally:
        await control.aclose()
        server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_admin_put_is_logged_at_info_level(clients: Any, admin_headers: Any, caplog: Any) -> None:
    # `stagedoor up` logs at INFO: a log field LogRecord reserves ("created") made this PUT a 500
    caplog.set_level(logging.INFO)
    _, adm = clients
    await put_room(adm, admin_headers, room="logged")
    logged = [r for r in caplog.records if r.getMessage() == "room_put"]
    assert logged and logged[0].room == "logged" and logged[0].new_room is True  # type: ignore[attr-defined]
