"""stagedoor/hot_http/ over real sockets: the hot path answers what aiohttp would have answered,
hands everything else to aiohttp without losing a byte, keeps answers in order, and shuts down
gracefully. The app here is a toy echo (no stores): the waiting room's own routes on the hot path
are tested in tests/waitingroom/test_hot_path.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import string
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from stagedoor.hot_http import HOT_ROUTES, HotRequest, HotResponse, HotRoute, HotRoutes, HotSite, plan_request

MAX_BODY = 1024
TEMPLATE = "/api/rooms/{room}/echo"


def _echo(request: Any, body: bytes, served_by: str) -> dict[str, Any]:
    return {
        "method": request.method, "path": request.path, "room": request.match_info["room"],
        "body": body.decode("utf-8", "replace"), "authorization": request.headers.get("Authorization"),
        "forwarded": request.headers.getall("X-Forwarded-For", []), "cookies": dict(request.cookies),
        "remote": request.remote, "host": request.host, "served_by": served_by,
    }


async def aiohttp_echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(_echo(request, body, "aiohttp"), headers={"Cache-Control": "no-store"})


async def hot_echo(request: HotRequest) -> HotResponse:
    if request.match_info["room"] == "slow":
        await asyncio.sleep(0.4)
    headers = CIMultiDict({"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"})
    response = HotResponse(json.dumps(_echo(request, request.body, "hot")).encode(), 200, headers)
    if request.match_info["room"] == "broken":
        response.headers["X-Bad"] = "a\r\nInjected: yes"
    return response


STOP_STREAMS = web.AppKey("stop_streams", asyncio.Event)


async def stream(request: web.Request) -> web.StreamResponse:
    """A chunked answer in three parts; ``?until=shutdown`` holds the last one until the app shuts down."""
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(b"one,")
    await asyncio.sleep(0.05)
    await response.write(b"two,")
    if request.query.get("until") == "shutdown":
        await request.app[STOP_STREAMS].wait()
    await response.write(b"three")
    await response.write_eof()
    return response


async def big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * (8 * 1024 * 1024), content_type="application/octet-stream")


def echo_app(hot: bool = True) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get(TEMPLATE, aiohttp_echo)
    app.router.add_post(TEMPLATE, aiohttp_echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/big", big)
    app[STOP_STREAMS] = asyncio.Event()

    async def end_streams(app: web.Application) -> None:
        app[STOP_STREAMS].set()

    app.on_shutdown.append(end_streams)
    if hot:
        app[HOT_ROUTES] = HotRoutes([HotRoute("GET", TEMPLATE, hot_echo), HotRoute("POST", TEMPLATE, hot_echo)],
                                    MAX_BODY)
    return app


@contextlib.asynccontextmanager
async def served(app: web.Application, **site_kwargs: Any) -> AsyncIterator[HotSite]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = HotSite(runner, "127.0.0.1", 0, **site_kwargs)
        await site.start()
        yield site
    finally:
        await runner.cleanup()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    async with contextlib.AsyncExitStack() as stack:
        async def start(app: web.Application, **site_kwargs: Any) -> HotSite:
            return await stack.enter_async_context(served(app, **site_kwargs))

        yield start


class Answer:
    def __init__(self, status: int, headers: CIMultiDict[str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


async def read_answer(reader: asyncio.StreamReader, head_only: bool = False) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 1"):  # 100 Continue: the answer follows
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    if head_only or status in (204, 304):
        return Answer(status, headers, b"")
    if "Content-Length" in headers:
        return Answer(status, headers, await reader.readexactly(int(headers["Content-Length"])))
    if headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                return Answer(status, headers, body[:-2])
            body = body[:-2]
    return Answer(status, headers, await reader.read())


async def exchange(port: int, raw: bytes, *, answers: int = 1, head_only: bool = False) -> list[Answer]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return [await asyncio.wait_for(read_answer(reader, head_only), 5) for _ in range(answers)]
    finally:
        writer.close()


def request(method: str = "GET", path: str = "/api/rooms/r1/echo", body: bytes = b"",
            headers: list[tuple[str, str]] | None = None, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}"]
    all_headers = headers if headers is not None else [("Host", "stage.example")]
    if body and not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in all_headers):
        all_headers = [*all_headers, ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    lines += [f"{name}: {value}" for name, value in all_headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ---------------------------------------------------------------- what is served where

async def test_plain_requests_are_served_hot_and_the_rest_by_aiohttp(serve: Any) -> None:
    site = await serve(echo_app())
    [get] = await exchange(site.port, request())
    assert get.status == 200 and get.json()["served_by"] == "hot" and get.json()["host"] == "stage.example"
    assert get.headers["Server"].startswith("Python/") and get.headers["Date"].endswith(" GMT")
    [post] = await exchange(site.port, request("POST", body=b'{"a": 1}'))
    assert post.json() | {"served_by": "", "remote": ""} == {
        "method": "POST", "path": "/api/rooms/r1/echo", "room": "r1", "body": '{"a": 1}', "authorization": None,
        "forwarded": [], "cookies": {}, "remote": "", "host": "stage.example", "served_by": ""}
    assert post.json()["served_by"] == "hot" and post.json()["remote"] == "127.0.0.1"
    [old] = await exchange(site.port, request(version="1.0"))
    assert old.json()["served_by"] == "hot" and old.headers.get("Connection") is None
    assert (site.passed, site.handed_off) == (0, 0)
    json_utf8 = [("Host", "h"), ("Content-Type", "application/json; charset=utf-8"), ("Content-Length", "8")]
    passed = [  # framed plainly, but not a hot route as such: passed to aiohttp, the connection kept
        request(path="/api/rooms/r1/echo?x=1"),  # a query string
        request(path="/api/rooms/R1/echo"),  # outside the placeholder's alphabet
        request(path="/api/rooms/r%31/echo"),  # an escape
        request("HEAD"),
        request(headers=[]),  # no Host
        request("POST", body=b'{"a": 1}', headers=json_utf8),
        request("POST", body=b"x" * 2000, headers=[("Host", "h"), ("Content-Length", "2000")]),  # over the limit
    ]
    for number, raw in enumerate(passed, start=1):
        [answer] = await exchange(site.port, raw, head_only=raw.startswith(b"HEAD"))
        assert answer.status == (413 if b"2000" in raw else 400 if b"Host" not in raw else 200), raw
        if answer.status == 200 and not raw.startswith(b"HEAD"):
            assert answer.json()["served_by"] == "aiohttp", raw
        assert (site.passed, site.handed_off) == (number, 0)
    handed = [  # framing we leave to aiohttp: the connection is aiohttp's from there on
        request("POST", body=b"8\r\n{\"a\": 1}\r\n0\r\n\r\n",
                headers=[("Host", "h"), ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]),
        request(headers=[("Host", "h"), ("Connection", "upgrade"), ("Upgrade", "websocket")]),
        request(headers=[("Host", "h"), ("Upgrade", "h2c")]),
        request(headers=[("Host", "h"), ("Expect", "100-continue")]),
        request(headers=[("Host", "h"), *[(f"X-H{i}", "v") for i in range(70)]]),
    ]
    for number, raw in enumerate(handed, start=1):
        [answer] = await exchange(site.port, raw)
        assert answer.status == 200 and answer.json()["served_by"] == "aiohttp", raw
        assert site.handed_off == number


async def test_bad_requests_get_aiohttps_answers(serve: Any) -> None:
    hot, plain = await serve(echo_app()), await serve(echo_app(hot=False))
    bad = [
        b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n",
        b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nHost: other\r\n\r\n",
        b"GET /api/rooms/r1/echo HTTP/1.1\nHost: h\n\n",  # bare line feeds
        b"POST /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        b"POST /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
        + b"x" * 2000,
        b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /api/rooms/r1/echo HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"Host: h\r\n\r\n",
    ]
    for raw in bad:
        [expected] = await exchange(plain.port, raw)
        [got] = await exchange(hot.port, raw)
        assert expected.status >= 400, raw[:60]
        assert (got.status, got.body) == (expected.status, expected.body), raw[:60]


# ---------------------------------------------------------------- hot and aiohttp answer alike

_HEADER_NAME = st.sampled_from(["Authorization", "authorization", "AUTHORIZATION", "X-Forwarded-For", "Cookie",
                                "x-forwarded-for", "cookie", "Accept", "X-Other"])
_HEADER_VALUE = st.text(alphabet=string.ascii_letters + string.digits + " =;,\"'.-_/:", max_size=24)


@st.composite
def echo_requests(draw: Any) -> tuple[bytes, bool]:
    method = draw(st.sampled_from(["GET", "GET", "POST", "POST", "HEAD", "PUT"]))
    room = draw(st.sampled_from(["r1", "a-b", "R1", "r%31", "x" * 130, "r_1"]))
    path = f"/api/rooms/{room}/echo" + draw(st.sampled_from(["", "", "?q=1", "/"]))
    version = draw(st.sampled_from(["1.1", "1.1", "1.1", "1.0"]))
    headers = [(draw(st.sampled_from(["Host", "host", "HOST"])), draw(st.sampled_from(["h", "stage.example:8080"])))]
    headers += draw(st.lists(st.tuples(_HEADER_NAME, _HEADER_VALUE), max_size=4))
    body = b""
    if method == "POST":
        body = draw(st.sampled_from([b"", b"{}", b'{"k": "v"}', b"not json", "{\"é\": 1}".encode()]))
        ctype = draw(st.sampled_from(["application/json", "application/json", "text/plain", "Application/JSON", None]))
        if ctype is not None:
            headers.append(("Content-Type", ctype))
        if body or draw(st.booleans()):
            headers.append(("Content-Length", draw(st.sampled_from(["{}", "{}", "0{}"])).format(len(body))))
    connection = draw(st.sampled_from([None, None, "keep-alive", "close", "Keep-Alive", "close, foo"]))
    if connection is not None:
        headers.append(("Connection", connection))
    headers = draw(st.permutations(headers))
    return request(method, path, body, list(headers), version), method == "HEAD"


@settings(max_examples=150, deadline=None)
@given(case=echo_requests())
async def test_the_hot_path_answers_as_aiohttp_does(case: tuple[bytes, bool]) -> None:
    raw, head_only = case
    async with served(echo_app()) as hot, served(echo_app(hot=False)) as plain:
        [expected] = await exchange(plain.port, raw, head_only=head_only)
        [got] = await exchange(hot.port, raw, head_only=head_only)
    assert got.status == expected.status, raw
    if expected.body and expected.headers.get("Content-Type", "").startswith("application/json"):
        mine, theirs = got.json(), expected.json()
        assert mine.pop("served_by") in ("hot", "aiohttp") and theirs.pop("served_by") == "aiohttp"
        assert mine == theirs, raw
    else:
        assert got.body == expected.body, raw
    assert got.headers.get("Cache-Control") == expected.headers.get("Cache-Control")
    if expected.headers.get("Connection", "").lower() == "close":
        assert got.headers.get("Connection", "").lower() == "close", raw


# ---------------------------------------------------------------- pipelined streams, against aiohttp alone

_ECHO = "/api/rooms/{}/echo"


def _chunked(body: bytes, cut: int) -> bytes:
    parts = [body[:cut], body[cut:]] if 0 < cut < len(body) else [body]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


_CLOSING = ("close", "http10", "bad_length", "duplicate_length", "length_and_chunked")


@st.composite
def pipelined_request(draw: Any, kinds: tuple[str, ...]) -> bytes:
    """One request of a pipelined stream, of one of ``kinds``: hot, passed or handed off; the
    _CLOSING kinds end the connection (aiohttp answers and closes)."""
    kind = draw(st.sampled_from(kinds))
    path = _ECHO.format(draw(st.sampled_from(["r1", "r2", "a-b"])))
    body = draw(st.sampled_from([b"{}", b'{"n": 1}', b'{"pad": "' + b"x" * 300 + b'"}']))
    json_type = ("Content-Type", "application/json")
    host = ("Host", "h")
    if kind == "hot_get":
        return request("GET", path)
    if kind == "hot_post":
        return request("POST", path, body)
    if kind == "passed_get":
        return request("GET", path + "?q=1")
    if kind == "passed_post":
        return request("POST", path, body, [host, ("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    if kind == "chunked":
        cut = draw(st.integers(0, len(body)))
        return request("POST", path, headers=[host, json_type, ("Transfer-Encoding", "chunked")]) + _chunked(body, cut)
    if kind == "expect":
        return request("POST", path, body, [host, json_type, ("Expect", "100-continue"),
                                            ("Content-Length", str(len(body)))])
    if kind == "http10_keep_alive":
        return request(path=path, headers=[host, ("Connection", "keep-alive")], version="1.0")
    if kind == "close":
        return request(path=path, headers=[host, ("Connection", "close")])
    if kind == "http10":
        return request(path=path, version="1.0")
    if kind == "bad_length":
        return request("POST", path, headers=[host, json_type, ("Content-Length", "1x")]) + body
    if kind == "duplicate_length":
        return request("POST", path, headers=[host, json_type, ("Content-Length", str(len(body))),
                                              ("Content-Length", str(len(body) + 1))]) + body
    assert kind == "length_and_chunked"
    return request("POST", path, headers=[host, json_type, ("Content-Length", str(len(body))),
                                          ("Transfer-Encoding", "chunked")]) + _chunked(body, 0)


@st.composite
def pipelined_streams(draw: Any) -> tuple[list[bytes], int, bytes]:
    """Several requests written in one go, cut at random places into the pieces the server reads,
    the last of them closing the connection (``Connection: close``, HTTP/1.0); or, a malformed
    request closing it (a bad Content-Length), sent once the answers before it are read: aiohttp
    alone, given a valid request and a malformed one in the same read, answers only the 400, so
    its answers would depend on where the reads end. -> (pieces, requests in them, malformed)."""
    keeping = ("hot_get", "hot_get", "hot_post", "passed_get", "passed_post", "chunked", "expect",
               "http10_keep_alive")
    requests = draw(st.lists(pipelined_request(keeping), min_size=1, max_size=6))
    ending = draw(st.sampled_from(_CLOSING))
    last = draw(pipelined_request((ending,)))
    if ending in ("close", "http10"):
        requests, last = [*requests, last], b""
    stream = b"".join(requests)
    cuts = sorted(set(draw(st.lists(st.integers(1, len(stream) - 1), max_size=5))))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)], len(requests), last


def _summary(answer: Answer) -> tuple[int, Any]:
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        echoed = answer.json()
        echoed.pop("served_by")
        return answer.status, echoed
    return answer.status, answer.body


async def converse(port: int, pieces: list[bytes], count: int, last: bytes) -> list[tuple[int, Any]]:
    """Write ``pieces`` one after the other (each read on its own by the server, mostly); with a
    ``last`` request, read ``count`` answers and then send it; read answers until the server
    closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []

    async def next_answer() -> None:
        answers.append(_summary(await asyncio.wait_for(read_answer(reader), 5)))

    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.001)
        if last:
            for _ in range(count):
                await next_answer()
            writer.write(last)
        while True:
            try:
                await next_answer()
            except (asyncio.IncompleteReadError, ConnectionError):
                return answers  # closed by the server after its last answer
    finally:
        writer.close()


@settings(max_examples=120, deadline=None)
@given(case=pipelined_streams())
async def test_pipelined_streams_are_answered_as_aiohttp_answers_them(case: tuple[list[bytes], int, bytes]) -> None:
    """Hot, passed and handed-off requests in one stream, split anywhere: the same answers, in the
    same order, and the connection ends where aiohttp alone ends it."""
    pieces, count, last = case
    async with served(echo_app()) as hot, served(echo_app(hot=False)) as plain:
        expected = await converse(plain.port, pieces, count, last)
        got = await converse(hot.port, pieces, count, last)
    assert got == expected, b"".join(pieces) + last
    assert len(expected) == count + bool(last), b"".join(pieces) + last


# ---------------------------------------------------------------- one connection, many requests

async def test_pipelined_requests_are_answered_in_order_hot_or_passed(serve: Any) -> None:
    site = await serve(echo_app())
    raw = (request("POST", body=b'{"n": 1}') + request("GET", "/api/rooms/slow/echo")
           + request("GET", "/api/rooms/r2/echo?handed=off") + request("POST", body=b'{"n": 4}'))
    answers = await exchange(site.port, raw, answers=4)
    got = [(a.json()["room"], a.json()["body"], a.json()["served_by"]) for a in answers]
    assert got == [("r1", '{"n": 1}', "hot"), ("slow", "", "hot"), ("r2", "", "aiohttp"), ("r1", '{"n": 4}', "hot")]
    assert (site.passed, site.handed_off) == (1, 0)


async def test_requests_fed_a_byte_at_a_time(serve: Any) -> None:
    site = await serve(echo_app())
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    text = [("Host", "h"), ("Content-Type", "text/plain"), ("Content-Length", "10")]
    cases = [(request("POST", body=b'{"slow": true}'), "hot", '{"slow": true}'), (request(), "hot", ""),
             (request("POST", body=b"plain text", headers=text), "aiohttp", "plain text"), (request(), "hot", "")]
    try:
        for raw, served_by, body in cases:
            for i in range(len(raw)):
                writer.write(raw[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0)
            answer = await asyncio.wait_for(read_answer(reader), 5)
            assert answer.status == 200 and (answer.json()["served_by"], answer.json()["body"]) == (served_by, body)
    finally:
        writer.close()
    assert (site.passed, site.handed_off) == (1, 0)


async def test_streamed_and_large_answers_from_aiohttp_then_hot_again(serve: Any) -> None:
    site = await serve(echo_app())
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    try:
        writer.write(request("GET", "/stream") + request())  # the hot one waits for the stream's end
        streamed = await asyncio.wait_for(read_answer(reader), 5)
        assert streamed.headers["Transfer-Encoding"] == "chunked" and streamed.body == b"one,two,three"
        assert (await asyncio.wait_for(read_answer(reader), 5)).json()["served_by"] == "hot"
        writer.write(request("GET", "/big") + request())
        await asyncio.sleep(0.3)  # the client reads late: the server's writes back up
        large = await asyncio.wait_for(read_answer(reader), 10)
        assert len(large.body) == 8 * 1024 * 1024
        assert (await asyncio.wait_for(read_answer(reader), 5)).json()["served_by"] == "hot"
    finally:
        writer.close()
    assert (site.passed, site.handed_off) == (2, 0)


async def test_connection_close_and_idle_connections(serve: Any) -> None:
    site = await serve(echo_app(), keepalive_s=0.3, head_timeout_s=0.3, body_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(request(headers=[("Host", "h"), ("Connection", "close")]))
    answer = await asyncio.wait_for(read_answer(reader), 5)
    assert answer.headers["Connection"] == "close" and answer.json()["served_by"] == "hot"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    for number in range(8):  # busy for longer than keepalive_s, never idle that long: kept open
        writer.write(request() if number % 2 else request(path="/api/rooms/r1/echo?passed=1"))
        assert (await asyncio.wait_for(read_answer(reader), 5)).status == 200
        await asyncio.sleep(0.1)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then idle for keepalive_s: closed
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"GET /api/rooms/r1/echo HTTP/1.1\r\nHo")  # a head that never completes
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(request("POST", body=b'{"never": "sent"}')[:-5])  # a body that never completes
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await asyncio.sleep(0.05)
    assert not site.connections


_PAD = [("Host", "h"), ("X-Pad", "p" * 80)]
_TEXT = [("Host", "h"), ("Content-Type", "text/plain"), ("Content-Length", "60")]
_CHUNKED = [("Host", "h"), ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]
TRICKLED = {  # (what is sent at once, what is then sent a byte at a time)
    "a head": (b"", request(headers=_PAD)),
    "a hot body": (request("POST", body=b"x" * 60)[:-60], b'{"k": "' + b"v" * 50 + b'"}'),
    "a body passed to aiohttp": (request("POST", body=b"x" * 60, headers=_TEXT)[:-60], b"t" * 60),
    "a chunked body, handed off": (request("POST", headers=_CHUNKED), b"3c\r\n" + b"c" * 60 + b"\r\n0\r\n\r\n"),
    "a head after a hand-off": (request("POST", headers=_CHUNKED) + b"2\r\n{}\r\n0\r\n\r\n", request(headers=_PAD)),
}


@pytest.mark.parametrize("case", list(TRICKLED))
async def test_a_request_trickled_a_byte_at_a_time_is_cut_at_its_deadline(serve: Any, case: str) -> None:
    """Sending a byte every 50 ms would take seconds; the head or body deadline (0.4 s here)
    closes the connection first, and no aiohttp handler is left waiting for the rest."""
    site = await serve(echo_app(), head_timeout_s=0.4, body_timeout_s=0.4)
    at_once, trickled = TRICKLED[case]
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)

    async def trickle() -> None:
        writer.write(at_once)
        for i in range(len(trickled)):
            writer.write(trickled[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    started = loop.time()
    sending = asyncio.create_task(trickle())
    try:
        received = await asyncio.wait_for(reader.read(), 5)
    finally:
        sending.cancel()
        writer.close()
    assert loop.time() - started < 0.05 * len(trickled) - 1  # well before the request was complete
    if case == "a head after a hand-off":
        assert received.startswith(b"HTTP/1.1 200 ") and received.count(b"HTTP/1.1") == 1  # the first one's answer
    else:
        assert received == b""  # unanswered, closed
    assert site.timed_out == 1
    await asyncio.sleep(0.05)
    assert not site._runner.server.connections  # aiohttp's handler saw the connection end


async def test_time_the_server_holds_the_client_back_does_not_count(serve: Any) -> None:
    """aiohttp pauses reading while a handler has not read the body it buffered: a body that
    waits for the server is not cut, however long that takes."""
    gate = asyncio.Event()

    async def slow_reader(request: web.Request) -> web.Response:
        await gate.wait()
        return web.json_response({"length": len(await request.read())})

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/upload", slow_reader)
    app[HOT_ROUTES] = HotRoutes([HotRoute("GET", TEMPLATE, hot_echo)], MAX_BODY)
    site = await serve(app, head_timeout_s=0.3, body_timeout_s=0.3)
    body = b"u" * (3 * 1024 * 1024)  # more than aiohttp buffers: it pauses reading
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(request("POST", "/upload", body, [("Host", "h"), ("Content-Length", str(len(body)))]))
    await asyncio.sleep(1.0)  # over three body deadlines, the server holding the client back
    gate.set()
    answer = await asyncio.wait_for(read_answer(reader), 5)
    writer.close()
    assert answer.status == 200 and answer.json() == {"length": len(body)} and site.timed_out == 0


async def test_a_client_leaving_mid_request_costs_nothing(serve: Any) -> None:
    site = await serve(echo_app())
    _, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(request("GET", "/api/rooms/slow/echo"))
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.6)  # the slow handler finished into a closed connection
    assert not site.connections
    [answer] = await exchange(site.port, request())
    assert answer.status == 200


async def test_a_response_header_with_a_line_break_is_a_500_not_an_injection(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    site = await serve(echo_app())
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(request("GET", "/api/rooms/broken/echo"))
    answer = await asyncio.wait_for(read_answer(reader), 5)
    assert answer.status == 500 and "Injected" not in answer.headers and answer.headers["Connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert any(r.message == "hot_response_failed" for r in caplog.records)


async def test_shutdown_finishes_requests_in_flight_and_closes_idle_connections(serve: Any) -> None:
    site = await serve(echo_app())
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", site.port)
    idle_writer.write(request())
    assert (await asyncio.wait_for(read_answer(idle_reader), 5)).status == 200
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", site.port)
    busy_writer.write(request("GET", "/api/rooms/slow/echo"))
    await busy_writer.drain()
    await asyncio.sleep(0.1)
    stopping = asyncio.create_task(site.stop())
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # the idle one: closed at once
    answer = await asyncio.wait_for(read_answer(busy_reader), 5)  # the busy one: answered, then closed
    assert answer.status == 200 and answer.json()["room"] == "slow" and answer.headers["Connection"] == "close"
    assert await asyncio.wait_for(busy_reader.read(), 5) == b""
    await asyncio.wait_for(stopping, 5)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", site.port)  # no longer listening
    idle_writer.close()
    busy_writer.close()


async def test_shutdown_leaves_streams_to_aiohttps_own_graceful_end() -> None:
    runner = web.AppRunner(echo_app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = HotSite(runner, "127.0.0.1", 0, shutdown_timeout_s=5)
    await site.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(request("GET", "/stream?until=shutdown"))
    await asyncio.sleep(0.2)
    await asyncio.wait_for(runner.cleanup(), 5)  # the app's on_shutdown ends the stream
    answer = await asyncio.wait_for(read_answer(reader), 5)
    assert answer.body == b"one,two,three"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_an_app_without_hot_routes_is_aiohttps_alone(serve: Any) -> None:
    site = await serve(echo_app(hot=False))
    [answer] = await exchange(site.port, request())
    assert answer.json()["served_by"] == "aiohttp" and not site.connections and site.handed_off == 0


# ---------------------------------------------------------------- the plan, directly

@pytest.mark.parametrize(("raw", "served"), [
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\n\r\n", "hot"),
    (b"GET /api/rooms/r1/echo HTTP/1.0\r\nHost: h\r\n\r\n", "hot"),
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", "hot"),
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n", "passed"),  # a body, untyped
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\n\r\n", "passed"),  # no Host
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
     "passed"),
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, foo\r\n\r\n", "passed"),
    (b"GET /api/rooms/r1/echo#frag HTTP/1.1\r\nHost: h\r\n\r\n", "passed"),
    (b"GET http://h/api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\n\r\n", "passed"),  # absolute form
    (b"DELETE /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\n\r\n", "passed"),
    (b"POST /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n",
     "hot"),
    (b"POST /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 1025\r\n\r\n",
     "passed"),
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nContent-Length: +0\r\n\r\n", "handed"),
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", "handed"),
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n", "handed"),
    (b"GET /api/rooms/r1/echo HTTP/2.0\r\nHost: h\r\n\r\n", "handed"),
    (b"GET /api/rooms/r1/echo HTTP/1.1\r\nHost: h\r\nbad header\r\n\r\n", "handed"),
])
def test_plan(raw: bytes, served: str) -> None:
    routes = [HotRoute("GET", TEMPLATE, hot_echo), HotRoute("POST", TEMPLATE, hot_echo)]
    plan = plan_request(raw, routes, MAX_BODY)
    assert ("handed" if plan is None else "passed" if plan.route is None else "hot") == served
