"""The waiting room's status and join on the hot path (stagedoor/hot_http/): served there, and
answering exactly what the same routes answer through aiohttp (here reached by the same request
with a detail that sends it the general way: a query string, a Content-Type parameter)."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from stagedoor.settings import Settings
from tests.support.rooms import PROBLEM, put_room

# answers differ in these by nature (a clock, a new id, a new token)
_VARYING_HEADERS = {"date", "x-request-id", "set-cookie", "content-length"}


@pytest.fixture(autouse=True)
def _hot_layer_on(wr_settings: Settings) -> None:
    if not wr_settings.hot_http:
        pytest.skip("the hot HTTP layer is off (STAGEDOOR_TEST_HOT_HTTP=false)")


def _site(wr: Any) -> Any:
    return wr.server.site


def _comparable(resp: Any, body: Any) -> tuple[Any, ...]:
    headers = sorted((k.lower(), v) for k, v in resp.headers.items() if k.lower() not in _VARYING_HEADERS)
    cookies = [re.sub(r"=[^;]*;", "=<token>;", c, count=1) for c in resp.headers.getall("Set-Cookie", [])]
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("request_id", "visitor_id", "queue_token", "position",
                                                          "waiting_total", "ahead")}
    return resp.status, headers, cookies, body


async def _answer(resp: Any) -> tuple[Any, ...]:
    body = await resp.json() if resp.content_type in ("application/json", PROBLEM) else await resp.read()
    return _comparable(resp, body)


async def test_status_and_join_are_served_hot_and_other_routes_by_aiohttp(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    joined = await wr.post("/api/rooms/r1/join", json={}, headers={"X-Request-Id": "fan-42"})
    assert joined.status == 201 and joined.headers["X-Request-Id"] == "fan-42"
    assert joined.headers["X-Content-Type-Options"] == "nosniff" and joined.headers["Cache-Control"] == "no-store"
    status = await wr.get("/api/rooms/r1/status")  # the cookie
    assert status.status == 200 and (await status.json())["position"] == 1
    assert (_site(wr).passed, _site(wr).handed_off) == (0, 0) and _site(wr).connections
    metrics = await (await wr.get("/metrics")).text()  # another route: passed to aiohttp
    assert (_site(wr).passed, _site(wr).handed_off) == (1, 0)
    assert (await wr.get("/api/rooms/r1/status")).status == 200  # the same connection, hot again
    assert (_site(wr).passed, _site(wr).handed_off) == (1, 0)
    script = await wr.get("/static/queue.js")  # a file (sendfile) passed to aiohttp, then hot again
    assert script.status == 200 and len(await script.read()) > 1000
    assert (await wr.get("/api/rooms/r1/status")).status == 200
    assert (_site(wr).passed, _site(wr).handed_off) == (2, 0)
    metrics = await (await wr.get("/metrics")).text()
    assert 'stagedoor_hot_http_total{app="waitingroom",way="passed"} 3.0' in metrics  # this scrape included
    for route, method, code in (("join", "POST", "201"), ("status", "GET", "200")):
        line = next(line for line in metrics.splitlines() if line.startswith("http_request_duration_seconds_count{")
                    and f'route="/api/rooms/{{room}}/{route}"' in line and f'method="{method}"' in line
                    and f'status="{code}"' in line)
        assert float(line.rsplit(" ", 1)[1]) >= 1


async def test_hot_answers_equal_aiohttps(clients: Any, admin_headers: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    await put_room(adm, admin_headers, room="shut", event_id="9", mode="closed")
    general = {"Content-Type": "application/json; charset=utf-8"}
    joins = [  # (path, body, extra headers)
        ("/api/rooms/r1/join", b"{}", {}),
        ("/api/rooms/r1/join", b"", {}),
        ("/api/rooms/r1/join", b"{not json", {}),
        ("/api/rooms/r1/join", b'{"colour": "red"}', {}),
        ("/api/rooms/r1/join", b'{"email": "fan@example.com"}', {}),
        ("/api/rooms/r1/join", b'{"email": "no"}', {}),
        ("/api/rooms/nope/join", b"{}", {}),
        ("/api/rooms/shut/join", b"{}", {}),
        ("/api/rooms/r1/join", b"{}", {"Authorization": "Bearer forged.token"}),
        ("/api/rooms/r1/join", b"{}", {"Cookie": "sdq_r1=stale", "Sec-Fetch-Site": "cross-site"}),
        ("/api/rooms/r1/join", b"{}", {"Cookie": "sdq_r1=stale", "Origin": "https://evil.example"}),
        ("/api/rooms/r1/join", b"{}", {"Cookie": "sdq_r1=stale"}),
    ]
    before = _site(wr).passed
    for path, body, headers in joins:
        wr.session.cookie_jar.clear()
        hot = await wr.post(path, data=body, headers={"Content-Type": "application/json", **headers})
        wr.session.cookie_jar.clear()
        handed = await wr.post(path, data=body, headers={**general, **headers})
        assert await _answer(hot) == await _answer(handed), (path, body, headers)
    # (an empty body needs no Content-Type: that one was served hot both times)
    assert _site(wr).passed == before + sum(1 for _, body, _ in joins if body) and _site(wr).handed_off == 0
    wr.session.cookie_jar.clear()
    token = (await (await wr.post("/api/rooms/r1/join", json={})).json())["queue_token"]
    wr.session.cookie_jar.clear()
    polls = [
        ("/api/rooms/r1/status", {"Authorization": f"Bearer {token}"}),
        ("/api/rooms/r1/status", {"Cookie": f"sdq_r1={token}"}),
        ("/api/rooms/r1/status", {}),
        ("/api/rooms/r1/status", {"Authorization": "Bearer forged"}),
        ("/api/rooms/r1/status", {"Authorization": "Basic Zm9vOmJhcg=="}),
        ("/api/rooms/nope/status", {"Authorization": f"Bearer {token}"}),
        ("/api/rooms/shut/status", {"Authorization": f"Bearer {token}"}),
    ]
    for path, headers in polls:
        hot = await wr.get(path, headers=headers)
        handed = await wr.get(path + "?general=1", headers=headers)
        hot_answer, handed_answer = await _answer(hot), await _answer(handed)
        assert _site(wr).handed_off == 0
        if isinstance(handed_answer[3], dict) and "instance" in handed_answer[3]:
            assert handed_answer[3]["instance"] == path  # the query is not part of the instance
        assert hot_answer == handed_answer, (path, headers)


async def test_a_large_or_chunked_join_body_goes_the_general_way(clients: Any, admin_headers: Any,
                                                                wr_settings: Any) -> None:
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    too_big = b'{"email": "' + b"a" * wr_settings.max_body_bytes + b'"}'
    resp = await wr.post("/api/rooms/r1/join", data=too_big, headers={"Content-Type": "application/json"})
    assert resp.status == 413 and resp.content_type == PROBLEM

    async def chunks() -> Any:
        yield b"{"
        yield b"}"

    resp = await wr.post("/api/rooms/r1/join", data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status == 201 and (await resp.json())["position"] == 1


async def test_one_shared_connection_serves_many_fans_apart(clients: Any, admin_headers: Any) -> None:
    """What a proxy does: one keep-alive connection carries several fans' requests, hot and passed
    in turn. Each answer is its own request's (no cookie, body or id carried over)."""
    wr, adm = clients
    await put_room(adm, admin_headers, paused=True)
    connector = aiohttp.TCPConnector(limit=1)  # every request on the same connection
    async with aiohttp.ClientSession(str(wr.make_url("")), connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as proxy:
        fans = []
        for _ in range(3):
            resp = await proxy.post("/api/rooms/r1/join", json={})
            fans.append((await resp.json())["queue_token"])
        for round_ in range(3):
            for position, token in enumerate(fans, start=1):
                if round_ == 1:
                    assert (await proxy.get("/rooms/r1", headers={"Cookie": f"sdq_r1={token}"})).status == 200
                poll = await proxy.get("/api/rooms/r1/status", headers={"Cookie": f"sdq_r1={token}"})
                body = await poll.json()
                assert (body["position"], body["state"]) == (position, "waiting")
                anonymous = await proxy.get("/api/rooms/r1/status")
                assert anonymous.status == 401 and anonymous.content_type == PROBLEM
    assert _site(wr).passed == 3 and _site(wr).handed_off == 0
