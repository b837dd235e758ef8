"""An HTTP/1.1 layer of our own under a service's hottest routes, in front of aiohttp.

Why: a status poll or a join is a few microseconds of our work and one pipelined Redis call, and
aiohttp's own machinery for a request (its protocol, ``web.Request``, the router, ``Response``
and its writer) costs more than all of that together (BENCHMARKS.md, session 8: aiohttp and the
loop are about 60 % of a waiting-room process's CPU under the join load). These two routes carry
nearly every request of an on-sale, so they get a lean path; everything else stays aiohttp's.

How: :class:`HotSite` listens instead of aiohttp's ``TCPSite`` and gives every connection a
:class:`HotProtocol`, which takes one request at a time, in order. It finds the end of each
request head itself and lets httptools (llhttp, the parser aiohttp's C extension is built on)
parse and validate it; then, by :func:`plan_request`:

- **served hot**, when it is one of the app's hot routes in its plainest form: HTTP/1.1 (or 1.0),
  at most 64 headers in at most 8,000 bytes, a method and path a :class:`HotRoute` matches exactly
  (no query string, no escapes), one ``Host``, at most one ``Connection`` (keep-alive or close),
  and a body, if any, of ``Content-Type: application/json`` within the app's body limit;
- **passed** to an aiohttp protocol kept for the connection, when its end is plain to find (a
  single well-formed ``Content-Length``, or no body): any other route, a HEAD, a query string, a
  charset parameter, a large body. aiohttp answers it exactly as it would alone; the request's
  body bytes are passed on as they arrive, and once aiohttp has written its whole answer (its
  access-log hook, :class:`_Answered`) the connection is hot again. So a browser's page, script
  and event-stream requests, or a proxy's shared keep-alive connections, do not push the polls
  that follow them off the hot path;
- **handed off** for good when its framing is what we leave to aiohttp (``Transfer-Encoding``,
  ``Expect``, ``Upgrade`` or CONNECT, ``TE``, a malformed, bare-LF or oversized head): the
  connection, with every byte not yet answered, goes to aiohttp's protocol
  (``transport.set_protocol``) for the rest of its life.

Requests are answered strictly in order (pipelined ones wait their turn), so neither way
overtakes an answer, and the request's end is always the one llhttp, and so aiohttp, reads.

A hot route's handler is the app's own edge (stagedoor/edge.py: request id, metrics, CSRF guard,
problem+json, security headers) around a handler that takes a :class:`HotRequest` (the parts of
``web.Request`` our domain code reads: ``app``, ``method``, ``path``, ``headers``, ``cookies``,
``remote``, ``host``, ``match_info``, ``body``) and returns a :class:`HotResponse` (or the
``web.Response`` the edge renders for an error). The same routes stay registered in aiohttp,
documented in /openapi.json and served there for whatever is passed or handed off.

Connections idle for ``keepalive_s`` are closed (a connection that had a request passed on may
also be closed by aiohttp's own idle timer, about an hour after that request). On shutdown the
site stops listening, closes idle connections and lets hot requests in flight finish (up to
``shutdown_timeout_s``); requests passed to aiohttp end with aiohttp's own shutdown, which
follows (event streams through the app's on_shutdown hooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import httptools
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.web_request import parse_cookie_header  # what web.Request.cookies parses with
from multidict import CIMultiDict

from stagedoor.edge import EDGE
from stagedoor.metrics import Count
from stagedoor.problems import METRICS_KEY

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8000  # a longer head is handed off (aiohttp applies its own limits: 8190 per line)
MAX_HEADERS = 64  # more are handed off (aiohttp refuses more than 128)
MAX_BUFFERED_BYTES = 256 * 1024  # pipelined input beyond this pauses reading until answers catch up
KEEPALIVE_S = 75.0
SHUTDOWN_TIMEOUT_S = 10.0

_HOST = "Host"
_CONTENT_TYPE = "Content-Type"
_CONNECTION = "Connection"
_HANDED_OFF_HEADERS = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"te", b"http2-settings"})
_DIGITS = re.compile(rb"^[0-9]{1,12}$")


class HotRequest:
    """One request on a hot route: what our handlers read of ``web.Request``, nothing more."""

    __slots__ = ("_cookies", "app", "body", "headers", "match_info", "method", "path", "remote")

    def __init__(self, app: web.Application, method: str, path: str, headers: CIMultiDict[str], body: bytes,
                 remote: str | None, match_info: dict[str, str]) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.remote = remote
        self.match_info = match_info
        self._cookies: dict[str, str] | None = None

    @property
    def host(self) -> str:
        return self.headers[_HOST]  # always present: a head without one is handed off

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            self._cookies = {name: morsel.value for name, morsel in parse_cookie_header(self.headers.get("Cookie", ""))}
        return self._cookies


class HotResponse:
    """A complete response of a hot route: status, headers, body (always a fixed length)."""

    __slots__ = ("body", "headers", "status")
    prepared = False  # what the edge asks of a response before adding its headers

    def __init__(self, body: bytes, status: int = 200, headers: CIMultiDict[str] | None = None) -> None:
        self.body = body
        self.status = status
        self.headers = headers if headers is not None else CIMultiDict()


HotHandler = Callable[[HotRequest], Awaitable[Any]]  # -> HotResponse, or the edge's web.Response


class HotRoute:
    """``method`` and a path template (``/api/rooms/{room}/status``) served by ``handler``. A
    placeholder matches ``[a-z0-9][a-z0-9-]*`` only: anything else goes the general way."""

    __slots__ = ("handler", "method", "pattern", "template")

    def __init__(self, method: str, template: str, handler: HotHandler) -> None:
        self.method = method
        self.template = template
        self.handler = handler
        parts = re.split(r"\{([a-z_]+)\}", template)
        regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[a-z0-9][a-z0-9-]{{0,127}})"
                        for i, part in enumerate(parts))
        self.pattern = re.compile(f"^{regex}$")


class HotRoutes:
    """An app's hot routes, and the body limit its aiohttp app enforces (``client_max_size``)."""

    __slots__ = ("max_body_bytes", "routes")

    def __init__(self, routes: Sequence[HotRoute], max_body_bytes: int) -> None:
        self.routes = tuple(routes)
        self.max_body_bytes = max_body_bytes


HOT_ROUTES = web.AppKey("hot_routes", HotRoutes)


def add_hot_routes(app: web.Application, routes: Sequence[tuple[str, str, HotHandler]], max_body_bytes: int) -> None:
    """Serve ``(method, template, handler)`` on the hot path of ``app`` when it listens through
    :class:`HotSite`, each behind the app's edge (labelled by its template, as the same route in
    aiohttp's router is). ``max_body_bytes``: the app's body limit (its ``client_max_size``)."""
    edge = app[EDGE]
    app[HOT_ROUTES] = HotRoutes([HotRoute(method, template, edge.wrap(handler, template, method))  # type: ignore[arg-type]
                                 for method, template, handler in routes], max_body_bytes)

# ---------------------------------------------------------------- responses on the wire

_STATUS_LINES: dict[tuple[int, bool], str] = {}
_date = ["", -1.0]  # the Date header, formatted once a second


def _status_line(status: int, version11: bool = True) -> str:
    line = _STATUS_LINES.get((status, version11))
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        line = _STATUS_LINES[status, version11] = f"HTTP/1.{int(version11)} {status} {reason}\r\n"
    return line


def _http_date() -> str:
    now = int(time.time())
    if now != _date[1]:
        _date[0], _date[1] = formatdate(now, usegmt=True), now
    return _date[0]  # type: ignore[return-value]


_OURS = ("Content-Length", "Connection", "Transfer-Encoding")  # set here, never by a handler


def encode_response(response: Any, keep_alive: bool, version11: bool = True) -> bytes:
    """The bytes of a complete response (a HotResponse or a web.Response with a bytes body), in
    the request's HTTP version (1.1, or 1.0 as aiohttp answers it)."""
    body = response.body or b""
    if type(body) is not bytes:  # a web.Response built from a payload: never on our hot routes
        raise TypeError(f"a hot route answered with a {type(body).__name__} body")
    headers = response.headers
    for name in _OURS:
        if name in headers:
            raise ValueError(f"a hot route set {name}")
    block = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    count = len(headers)
    if block.count("\n") != count or block.count("\r") != count or "\x00" in block:
        raise ValueError("a response header carries a line break")  # no header injection, ever
    if version11:
        connection = "" if keep_alive else "Connection: close\r\n"
    else:
        connection = "Connection: keep-alive\r\n" if keep_alive else ""
    return (f"{_status_line(response.status, version11)}{block}Content-Length: {len(body)}\r\n"
            f"Date: {_http_date()}\r\nServer: {SERVER_SOFTWARE}\r\n{connection}\r\n").encode() + body


# ---------------------------------------------------------------- the request head

class _Head:
    """httptools' callbacks for one request head."""

    __slots__ = ("complete", "headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


class _Plan:
    """A request whose framing we know: served hot (``route`` set) or passed to aiohttp (``route``
    None), its body ``length`` bytes after the head."""

    __slots__ = ("headers", "keep_alive", "length", "match_info", "method", "path", "route", "version11")

    def __init__(self, length: int, route: HotRoute | None = None, match_info: dict[str, str] | None = None,
                 headers: CIMultiDict[str] | None = None, keep_alive: bool = True, method: str = "",
                 path: str = "", version11: bool = True) -> None:
        self.length, self.route, self.match_info, self.headers = length, route, match_info, headers
        self.keep_alive, self.method, self.path, self.version11 = keep_alive, method, path, version11


def plan_request(head_bytes: bytes, routes: Sequence[HotRoute], max_body: int) -> _Plan | None:
    """How to serve the request whose complete head (through its blank line) is ``head_bytes``:
    a plan to serve it hot or to pass it to aiohttp, or None when its framing is not plain enough
    to find where it ends (the connection is then handed to aiohttp for good). See the module
    docstring for what is served hot."""
    head = _Head()
    parser = httptools.HttpRequestParser(head)
    try:
        parser.feed_data(head_bytes)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # malformed, or an upgrade / CONNECT
        return None
    raw_headers = head.headers
    if not head.complete or len(raw_headers) > MAX_HEADERS:
        return None
    version = parser.get_http_version()
    if version not in ("1.1", "1.0"):
        return None
    length = 0
    content_lengths = 0
    for name, value in raw_headers:  # the framing, as llhttp (and so aiohttp) reads it
        lowered = name.lower()
        if lowered in _HANDED_OFF_HEADERS:
            return None
        if lowered == b"content-length":
            content_lengths += 1
            if content_lengths > 1 or not _DIGITS.match(value):
                return None
            length = int(value)
    method = parser.get_method().decode("ascii", "replace")
    path = head.url.decode("ascii", "replace")
    for route in routes:
        if route.method == method:
            match = route.pattern.match(path)
            if match is not None:
                break
    else:
        return _Plan(length)
    # a hot route: its headers as aiohttp decodes them
    headers: CIMultiDict[str] = CIMultiDict([(name.decode("utf-8", "surrogateescape"),
                                              value.decode("utf-8", "surrogateescape"))
                                             for name, value in raw_headers])
    if (length > max_body or len(headers.getall(_HOST, ())) != 1 or len(headers.getall(_CONNECTION, ())) > 1
            or (length and headers.get(_CONTENT_TYPE) != "application/json")):
        return _Plan(length)  # aiohttp's answers: 413, no Host, ...
    version11 = version == "1.1"
    keep_alive = version11
    connection = headers.get(_CONNECTION)
    if connection is not None:
        token = connection.strip().lower()
        if token not in ("close", "keep-alive"):
            return _Plan(length)
        keep_alive = token == "keep-alive"
    return _Plan(length, route, match.groupdict(), headers, keep_alive, method, path, version11)


# ---------------------------------------------------------------- the protocol

class _Answered(AbstractAccessLogger):
    """aiohttp's access-log hook, called once a response is completely written: tells the
    connection's HotProtocol that the request it passed to aiohttp is answered."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        transport = request.transport
        protocol = transport.get_protocol() if transport is not None else None
        if isinstance(protocol, HotProtocol):
            protocol.general_answered(response.keep_alive)


class HotSite(web.TCPSite):
    """aiohttp's TCPSite with :class:`HotProtocol` in front of the app's hot routes (``HOT_ROUTES``);
    an app without any is served by aiohttp's protocol alone."""

    def __init__(self, runner: web.AppRunner, host: str | None = None, port: int | None = None, *,
                 keepalive_s: float = KEEPALIVE_S, shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.keepalive_s = keepalive_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self.connections: set[HotProtocol] = set()
        # requests passed to aiohttp, connections given to it for good: the app's
        # stagedoor_hot_http_total when it has stagedoor metrics, else counted here
        self._passed = Count()
        self._handed_off = Count()
        self._drained: asyncio.Event | None = None  # set once no hot request is in flight, when stopping

    async def start(self) -> None:
        runner = self._runner
        app = runner.app  # type: ignore[attr-defined]
        hot: HotRoutes | None = app.get(HOT_ROUTES)
        if hot is None or not hot.routes:
            await super().start()
            return
        await web.BaseSite.start(self)  # registers the site with the runner
        loop = asyncio.get_running_loop()
        server = runner.server
        assert server is not None
        routes, max_body = hot.routes, hot.max_body_bytes
        metrics = app.get(METRICS_KEY)
        if metrics is not None:
            self._passed = metrics.hot_http_total.labels(metrics.app_name, "passed")
            self._handed_off = metrics.hot_http_total.labels(metrics.app_name, "handed_off")

        def passing() -> web.RequestHandler:
            """aiohttp's protocol for the requests a connection passes on (one at a time)."""
            return web.RequestHandler(server, loop=loop, access_log_class=_Answered, access_log=logger)

        self._server = await loop.create_server(
            lambda: HotProtocol(self, app, routes, server, passing, max_body),
            self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        """Stop listening, close idle connections, let hot requests in flight finish (up to the
        shutdown timeout). Requests passed to aiohttp are aiohttp's to finish (its own shutdown
        follows this, after the app's on_shutdown hooks have ended event streams)."""
        await super().stop()
        self._drained = asyncio.Event()
        for conn in list(self.connections):
            conn.close_when_idle()
        if any(conn.hot_busy for conn in self.connections):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self._shutdown_timeout_s)
        for conn in list(self.connections):
            if conn.hot_busy:
                conn.abort()

    @property
    def passed(self) -> int:
        return self._passed.value

    @property
    def handed_off(self) -> int:
        return self._handed_off.value

    def count_passed(self) -> None:
        self._passed.inc()

    def count_handed_off(self) -> None:
        self._handed_off.inc()

    def forget(self, conn: HotProtocol) -> None:
        """``conn`` is closed or handed off."""
        self.connections.discard(conn)
        self.hot_done()

    def hot_done(self) -> None:
        if self._drained is not None and not any(conn.hot_busy for conn in self.connections):
            self._drained.set()


class HotProtocol(asyncio.Protocol):
    """One connection, one request at a time, in order: a hot request is answered here; another
    whose end can be found (a Content-Length or no body) is passed to an aiohttp protocol kept
    for the connection; the first whose end cannot be found hands the connection to aiohttp."""

    def __init__(self, site: HotSite, app: web.Application, routes: Sequence[HotRoute],
                 handing_off: Callable[[], asyncio.Protocol], passing: Callable[[], web.RequestHandler],
                 max_body: int) -> None:
        self._site = site
        self._app = app
        self._routes = routes
        self._handing_off = handing_off
        self._passing = passing
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._buffer = b""
        self.hot_busy = False  # a hot request is being answered
        self._general: web.RequestHandler | None = None  # aiohttp's protocol, once a request was passed
        self._general_busy = False  # a passed request is not answered yet
        self._general_remaining = 0  # bytes of its body still to pass
        self._closing = False  # close once the request in flight is answered
        self._write_paused = False
        self._read_paused = False
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None  # when the connection last went idle (None: busy)
        self._waiting_plan: _Plan | None = None  # a hot request's plan while its body arrives
        self._tasks: set[asyncio.Task[None]] = set()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, tuple | list) and peer else None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # as aiohttp does
        self._site.connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self._general_remaining:  # the rest of a passed request's body
            now, data = data[:self._general_remaining], data[self._general_remaining:]
            self._general_remaining -= len(now)
            self._general.data_received(now)  # type: ignore[union-attr]
            if not data:
                return
        self._buffer += data
        if not self._busy:
            self._serve_next()
        elif len(self._buffer) > MAX_BUFFERED_BYTES and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool | None:
        if self._busy:
            self._closing = True
        else:
            self._close()
        return True  # keep the transport open for the answer in flight

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._stop_idle_timer()
        if self._general is not None:
            self._general.connection_lost(exc)
        self.hot_busy = False
        self._site.forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._general is not None:
            self._general.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._general is not None:
            self._general.resume_writing()
        if not self._busy:
            self._serve_next()

    # -- shutdown

    def close_when_idle(self) -> None:
        if self._busy:
            self._closing = True
        else:
            self._close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- serving

    @property
    def _busy(self) -> bool:
        return self.hot_busy or self._general_busy

    def _serve_next(self) -> None:
        while not self._busy and not self._write_paused and not self._closing and self._transport is not None:
            buf = self._buffer
            if not buf:
                if self._read_paused:
                    self._read_paused = False
                    self._transport.resume_reading()
                return
            end = buf.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
            if end < 0:
                if len(buf) >= MAX_HEAD_BYTES or not buf[:1].isalpha() or b"\n\n" in buf:
                    self._hand_off()  # an oversized or garbled head, bare LFs: aiohttp answers it
                return  # else wait for the rest of the head
            head_end = end + 4
            plan = self._waiting_plan or plan_request(buf[:head_end], self._routes, self._max_body)
            self._waiting_plan = None
            if plan is None:
                self._hand_off()
                return
            if plan.route is None:
                self._cancel_idle()  # aiohttp's from here until its answer
                self._pass(buf, head_end + plan.length)
                continue
            total = head_end + plan.length
            if len(buf) < total:
                self._waiting_plan = plan  # the head is read: wait for the rest of the body
                return  # (bounded by max_body; the idle timer runs on)
            self._cancel_idle()
            request = HotRequest(self._app, plan.method, plan.path, plan.headers, buf[head_end:total],  # type: ignore[arg-type]
                                 self._remote, plan.match_info)  # type: ignore[arg-type]
            self._buffer = buf[total:]
            self.hot_busy = True
            task = asyncio.get_running_loop().create_task(
                self._answer(plan.route.handler, request, plan.keep_alive, plan.version11))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, handler: HotHandler, request: HotRequest, keep_alive: bool, version11: bool) -> None:
        try:
            response = await handler(request)  # the edge answers every error itself
            data = encode_response(response, keep_alive and not self._closing, version11)
        except Exception:  # a response we cannot put on the wire: a bug of ours, never the client's
            logger.exception("hot_response_failed", extra={"path": request.path})
            data = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/problem+json\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            keep_alive = False
        self.hot_busy = False
        self._site.hot_done()
        transport = self._transport
        if transport is None:
            return  # the client went away meanwhile
        transport.write(data)
        if not keep_alive or self._closing:
            self._close()
            return
        self._arm_idle()
        self._serve_next()

    def _pass(self, buf: bytes, total: int) -> None:
        """Pass the request of ``total`` bytes at the start of ``buf`` (what of it has arrived) to
        aiohttp's protocol for this connection; the rest of its body follows as it arrives."""
        if self._general is None:
            self._general = self._passing()
            self._general.connection_made(self._transport)  # type: ignore[arg-type]
        now, self._buffer = buf[:total], buf[total:]
        self._general_remaining = total - len(now)
        self._general_busy = True
        self._site.count_passed()
        self._general.data_received(now)

    def general_answered(self, keep_alive: bool) -> None:
        """aiohttp has written its whole answer to the request passed to it (see _Answered)."""
        if not self._general_busy:
            return
        self._general_busy = False
        if not keep_alive:
            self._closing = True  # aiohttp closes the connection itself
            return
        if self._closing:
            self._close()
            return
        self._arm_idle()
        if self._buffer:  # pipelined: after aiohttp's own bookkeeping of this answer
            asyncio.get_running_loop().call_soon(self._serve_next)

    def _hand_off(self) -> None:
        """From here on aiohttp serves this connection, starting with the bytes not yet answered."""
        transport = self._transport
        assert transport is not None and not self._busy
        self._stop_idle_timer()
        self._site.forget(self)
        self._site.count_handed_off()
        pending, self._buffer = self._buffer, b""
        protocol = self._general
        if protocol is None:
            protocol = self._handing_off()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
        else:
            transport.set_protocol(protocol)  # already connected: it was passed requests before
        self._transport = None
        self._general = None
        if self._read_paused:
            transport.resume_reading()
        if pending:
            protocol.data_received(pending)

    def _close(self) -> None:
        self._stop_idle_timer()
        if self._transport is not None:
            self._transport.close()

    def _arm_idle(self) -> None:
        """The connection is idle from now: closed after ``keepalive_s`` unless a request comes.
        One timer per connection, moved only when it fires early (a timer per request costs more
        than a small request's parsing)."""
        loop = asyncio.get_running_loop()
        self._idle_since = loop.time()
        if self._idle is None:
            self._idle = loop.call_at(self._idle_since + self._site.keepalive_s, self._on_idle)

    def _cancel_idle(self) -> None:
        self._idle_since = None

    def _stop_idle_timer(self) -> None:
        self._idle_since = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _on_idle(self) -> None:
        self._idle = None
        since = self._idle_since
        if since is None or self._busy:
            return  # busy now: armed again after the answer
        close_at = since + self._site.keepalive_s
        loop = asyncio.get_running_loop()
        if loop.time() < close_at:
            self._idle = loop.call_at(close_at, self._on_idle)
        else:
            self._close()


__all__ = ["HOT_ROUTES", "HotProtocol", "HotRequest", "HotResponse", "HotRoute", "HotRoutes", "HotSite",
           "add_hot_routes", "encode_response", "plan_request"]
