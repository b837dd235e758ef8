"""An HTTP/1.1 layer of our own under a service's hottest routes, in front of aiohttp.

Why: a status poll or a join is a few microseconds of our work and one pipelined Redis call, and
aiohttp's own machinery for a request (its protocol, ``web.Request``, the router, ``Response``
and its writer) costs more than all of that together (a profile of a waiting-room process under
the join load puts aiohttp and the loop at about 60 % of its CPU). These two routes carry nearly
every request of an on-sale, so they get a lean path; everything else stays aiohttp's. The layer
is optional: ``STAGEDOOR_HOT_HTTP=false`` serves every request through aiohttp's own ``TCPSite``
(:func:`make_site`); docs/decisions/0001-hot-http-layer.md records what it is worth.

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
  ``Expect``, ``Upgrade`` or CONNECT, ``TE``, a malformed, bare-LF or oversized head): from then
  on every byte not yet answered, and every byte that follows, goes to aiohttp's protocol as it
  arrives, and aiohttp alone reads the requests.

Requests are answered strictly in order (pipelined ones wait their turn), so neither way
overtakes an answer, and the request's end is always the one llhttp, and so aiohttp, reads.

Flow control has one owner, :meth:`HotProtocol._update_reading`: the connection reads while the
input it holds beyond the request in progress stays within ``MAX_BUFFERED_BYTES`` and aiohttp's
protocol has not asked to pause (aiohttp sees the connection through :class:`_TransportView`,
which brings its pause and resume requests here instead of to the socket). A client that
pipelines requests and never reads the answers fills the socket's write buffer; no next request
is started while writing is paused, the unread input stops at the bound, and the kernel's
buffers hold the rest. Handed-off connections are bounded by aiohttp's own flow control (its
queue of pipelined requests and its body buffers), through the same owner.

Deadlines, one timer per connection (:meth:`HotProtocol._expect`): a connection idle for
``keepalive_s`` is closed; a request's head must arrive within ``head_timeout_s`` of its first
byte and its body within ``body_timeout_s`` of its head, whichever way it is served (a body passed
to aiohttp, or a request on a handed-off connection, is followed with httptools as it goes by);
past a deadline the connection is closed, and aiohttp's handler waiting for the body sees the
connection lost. Waiting for an answer has no deadline (an event stream lasts minutes); time the
server holds the client back (aiohttp paused reading) does not count.

A hot route's handler is the app's own edge (stagedoor/edge.py: request id, metrics, CSRF guard,
problem+json, security headers) around a handler that takes a :class:`HotRequest` (the parts of
``web.Request`` our domain code reads: ``app``, ``method``, ``path``, ``headers``, ``cookies``,
``remote``, ``host``, ``match_info``, ``body``) and returns a :class:`HotResponse` (or the
``web.Response`` the edge renders for an error). The same routes stay registered in aiohttp,
documented in /openapi.json and served there for whatever is passed or handed off.

On shutdown the site stops listening, closes idle connections and lets hot requests in flight
finish (up to ``shutdown_timeout_s``); requests passed to aiohttp end with aiohttp's own shutdown,
which follows (event streams through the app's on_shutdown hooks). A connection that had a
request passed on may also be closed by aiohttp's own idle timer, about an hour after that request.

What this relies on in aiohttp (hence the version pins in pyproject.toml): ``web.RequestHandler``
built here for the runner's ``server``, ``TCPSite``'s ``_runner``/``_server``/``_host``/``_port``,
``web_request.parse_cookie_header``, ``http.SERVER_SOFTWARE``, the access logger being called once
a response is completely written, and a handler's transport used only through the methods
:class:`_TransportView` forwards.
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
from typing import Any, cast

import httptools
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http import SERVER_SOFTWARE

# what web.Request.cookies parses with; aiohttp's typing marks it private there (imported, not re-exported)
from aiohttp.web_request import parse_cookie_header  # type: ignore[attr-defined]
from multidict import CIMultiDict

from stagedoor.edge import EDGE
from stagedoor.metrics import Count
from stagedoor.problems import METRICS_KEY

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8000  # a longer head is handed off (aiohttp applies its own limits: 8190 per line)
MAX_HEADERS = 64  # more are handed off (aiohttp refuses more than 128)
# input held beyond the request in progress (pipelined requests) before reading pauses; one more
# read of the socket (up to 256 KiB with uvloop) can arrive on top of it
MAX_BUFFERED_BYTES = 64 * 1024
KEEPALIVE_S = 75.0  # an idle connection is closed after this
HEAD_TIMEOUT_S = 30.0  # a request's head, from its first byte to its blank line
BODY_TIMEOUT_S = 60.0  # a request's body, from the end of its head (16 MiB at the largest: ~280 KB/s)
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
    app[HOT_ROUTES] = HotRoutes([HotRoute(method, template, edge.wrap(handler, template, method))
                                 for method, template, handler in routes], max_body_bytes)

# ---------------------------------------------------------------- responses on the wire

_STATUS_LINES: dict[tuple[int, bool], str] = {}
_date: tuple[str, int] = ("", -1)  # the Date header, formatted once a second, and that second


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
    global _date
    now = int(time.time())
    if now != _date[1]:
        _date = formatdate(now, usegmt=True), now
    return _date[0]


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
        if isinstance(transport, _TransportView):
            transport.owner.general_answered(response.keep_alive)


def make_site(runner: web.BaseRunner, host: str | None = None, port: int | None = None, *, hot: bool = True,
              **kwargs: Any) -> web.TCPSite:
    """The site a service listens through: :class:`HotSite`, or with ``hot`` False aiohttp's own
    ``TCPSite`` (every request aiohttp's; the ``hot_http`` setting, STAGEDOOR_HOT_HTTP)."""
    if not hot:
        kwargs.pop("keepalive_s", None)
        kwargs.pop("shutdown_timeout_s", None)
        return web.TCPSite(runner, host, port, **kwargs)
    return HotSite(runner, host, port, **kwargs)


class HotSite(web.TCPSite):
    """aiohttp's TCPSite with :class:`HotProtocol` in front of the app's hot routes (``HOT_ROUTES``);
    an app without any is served by aiohttp's protocol alone. The timeouts are the module's
    defaults unless given (tests shorten them)."""

    def __init__(self, runner: web.BaseRunner, host: str | None = None, port: int | None = None, *,
                 keepalive_s: float = KEEPALIVE_S, head_timeout_s: float = HEAD_TIMEOUT_S,
                 body_timeout_s: float = BODY_TIMEOUT_S, shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.keepalive_s = keepalive_s
        self.head_timeout_s = head_timeout_s
        self.body_timeout_s = body_timeout_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self.connections: set[HotProtocol] = set()
        # requests passed to aiohttp, connections given to it for good, connections closed for a
        # request that did not arrive in time: the app's stagedoor_hot_http_total when it has
        # stagedoor metrics, else counted here
        self._passed = Count()
        self._handed_off = Count()
        self._timed_out = Count()
        self._drained: asyncio.Event | None = None  # set once no hot request is in flight, when stopping

    async def start(self) -> None:
        runner = self._runner
        assert isinstance(runner, web.AppRunner), "a HotSite serves an application's runner"
        app = runner.app
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
            self._timed_out = metrics.hot_http_total.labels(metrics.app_name, "timed_out")

        def passing() -> web.RequestHandler:
            """aiohttp's protocol for the requests a connection passes or hands on."""
            return web.RequestHandler(server, loop=loop, access_log_class=_Answered, access_log=logger)

        self._server = await loop.create_server(
            lambda: HotProtocol(self, app, routes, passing, max_body),
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

    @property
    def timed_out(self) -> int:
        return self._timed_out.value

    def count_passed(self) -> None:
        self._passed.inc()

    def count_handed_off(self) -> None:
        self._handed_off.inc()

    def count_timed_out(self) -> None:
        self._timed_out.inc()

    def forget(self, conn: HotProtocol) -> None:
        """``conn`` is closed or handed off."""
        self.connections.discard(conn)
        self.hot_done()

    def hot_done(self) -> None:
        if self._drained is not None and not any(conn.hot_busy for conn in self.connections):
            self._drained.set()


class _TransportView(asyncio.Transport):
    """The connection's transport as aiohttp's protocol sees it: the socket's own, except that
    pausing and resuming reading are requests to the :class:`HotProtocol`, which alone decides
    (aiohttp pauses when a body buffer or its queue of pipelined requests is full)."""

    __slots__ = ("__weakref__", "_transport", "owner")  # a loop's sendfile keeps it in a weak mapping

    def __init__(self, owner: HotProtocol, transport: asyncio.Transport) -> None:
        super().__init__()
        self.owner = owner
        self._transport = transport

    def pause_reading(self) -> None:
        self.owner.aiohttp_reading(False)

    def resume_reading(self) -> None:
        self.owner.aiohttp_reading(True)

    def is_reading(self) -> bool:
        return self.owner.aiohttp_wants_reading

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def __getattr__(self, name: str) -> Any:  # what else a loop reads of its transport (sendfile's)
        return getattr(self._transport, name)


# what a connection waits for from the client (None: the server's turn), each with its deadline
_IDLE, _HEAD, _BODY = "idle", "head", "body"


class _Frames:
    """httptools' callbacks following the requests of a handed-off connection as they go by to
    aiohttp, for their deadlines only (aiohttp reads them)."""

    __slots__ = ("owner", "parser")

    def __init__(self, owner: HotProtocol) -> None:
        self.owner = owner
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.owner._expect(_HEAD)

    def on_headers_complete(self) -> None:
        self.owner._expect(_BODY)

    def on_message_complete(self) -> None:
        self.owner._expect(None)


class HotProtocol(asyncio.Protocol):
    """One connection, one request at a time, in order: a hot request is answered here; another
    whose end can be found (a Content-Length or no body) is passed to an aiohttp protocol kept
    for the connection; the first whose end cannot be found hands the connection to aiohttp.
    Reading is paused and resumed in one place (:meth:`_update_reading`), deadlines kept in
    another (:meth:`_expect`)."""

    def __init__(self, site: HotSite, app: web.Application, routes: Sequence[HotRoute],
                 passing: Callable[[], web.RequestHandler], max_body: int) -> None:
        self._site = site
        self._app = app
        self._routes = routes
        self._passing = passing
        self._max_body = max_body
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._buffer = b""  # input not yet served, passed or handed on
        self.hot_busy = False  # a hot request is being answered
        self._general: web.RequestHandler | None = None  # aiohttp's protocol, once a request was passed
        self._general_busy = False  # a passed request is not answered yet
        self._general_remaining = 0  # bytes of its body still to pass
        self._handed_off = False  # aiohttp reads every request from here on
        self._frames: _Frames | None = None  # a handed-off connection's requests, followed for deadlines
        self._closing = False  # close once the request in flight is answered
        self._write_paused = False
        self._read_paused = False  # the socket's reading, as _update_reading left it
        self.aiohttp_wants_reading = True  # what aiohttp's protocol asked for last (through _TransportView)
        self._waiting_plan: _Plan | None = None  # a hot request's plan while its body arrives
        self._front_total = 0  # and its length, head and body
        self._expecting: str | None = None  # _IDLE, _HEAD, _BODY or None (see _expect)
        self._deadline_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream protocol's transport: asyncio.Transport's methods (uvloop's does not subclass it)
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, tuple | list) and peer else None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # as aiohttp does
        self._site.connections.add(self)
        self._expect(_IDLE)

    def data_received(self, data: bytes) -> None:
        if self._handed_off:
            self._follow(data)
            general = self._general
            assert general is not None  # made by the hand-off
            general.data_received(data)
            return
        remaining = self._general_remaining
        if remaining:  # the rest of a passed request's body goes straight on
            now, data = data[:remaining], data[remaining:]
            self._general_remaining = remaining = remaining - len(now)
            general = self._general
            assert general is not None  # made by _pass
            general.data_received(now)
            if not remaining:
                self._expect(None)  # the body is in: aiohttp's turn
            if not data:
                return
        self._buffer += data
        self._serve_next()
        self._update_reading()

    def eof_received(self) -> bool | None:
        if self._handed_off:
            general = self._general
            assert general is not None  # made by the hand-off
            general.eof_received()  # aiohttp's answers None: the loop closes the transport
            return None
        if self._busy:
            self._closing = True
        else:
            self._close()
        return True  # keep the transport open for the answer in flight

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._expecting = self._deadline_at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._general is not None:
            self._general.connection_lost(exc)
        self.hot_busy = False
        self._site.forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True  # no next request is started until the client reads
        if self._general is not None:
            self._general.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._general is not None:
            self._general.resume_writing()
        self._resume()

    # -- shutdown

    def close_when_idle(self) -> None:
        if self._busy:
            self._closing = True
        else:
            self._close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- flow control and deadlines

    @property
    def _busy(self) -> bool:
        return self.hot_busy or self._general_busy

    def _update_reading(self) -> None:
        """The one place that pauses or resumes reading the socket: paused while the input held
        beyond the request in progress exceeds MAX_BUFFERED_BYTES (pipelined requests waiting for
        their turn, or for a client that does not read its answers), or while aiohttp's protocol
        asks for it."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        held = len(self._buffer) - (0 if self._busy else self._front_total)
        pause = held > MAX_BUFFERED_BYTES or not self.aiohttp_wants_reading
        if pause is not self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def aiohttp_reading(self, reading: bool) -> None:
        """aiohttp's protocol asks to pause (False) or resume (True) reading."""
        self.aiohttp_wants_reading = reading
        self._update_reading()

    def _timeout(self, kind: str) -> float:
        site = self._site
        return site.keepalive_s if kind == _IDLE else site.head_timeout_s if kind == _HEAD else site.body_timeout_s

    def _expect(self, kind: str | None) -> None:
        """The connection now waits for the client to send ``kind`` (a next request, the rest of
        a head, the rest of a body), for the timeout of that kind from now; None: for the server.
        Unchanged while it waits for the same thing. One timer per connection, moved only when
        it fires early (a timer per request costs more than a small request's parsing)."""
        if kind == self._expecting:
            return
        self._expecting = kind
        if kind is None:
            self._deadline_at = None
            return
        at = self._deadline_at = self._loop.time() + self._timeout(kind)
        timer = self._timer
        if timer is None or timer.when() > at:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(at, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        at, kind = self._deadline_at, self._expecting
        if at is None or kind is None or self._transport is None:
            return  # the server's turn now: armed again when the client's comes
        now = self._loop.time()
        if now < at:
            self._timer = self._loop.call_at(at, self._on_deadline)
            return
        if kind != _IDLE:
            if not self.aiohttp_wants_reading:  # the server holds the client back: that time does not count
                self._deadline_at = now + self._timeout(kind)
                self._timer = self._loop.call_at(self._deadline_at, self._on_deadline)
                return
            logger.warning("hot_http_read_timeout", extra={"waiting_for": kind, "handed_off": self._handed_off})
            self._site.count_timed_out()
        self._close()  # aiohttp's handler, if one waits for the body, sees the connection lost

    # -- serving

    def _resume(self) -> None:
        if not self._handed_off:
            self._serve_next()
        self._update_reading()

    def _serve_next(self) -> None:
        """Serve what the buffer holds, in order, while no request is in flight; then say what
        the connection waits for."""
        while self._transport is not None and not self._closing and not self._handed_off:
            if self._busy:
                self._expect(_BODY if self._general_remaining else None)
                return
            buf = self._buffer
            if not buf or self._write_paused:
                self._expect(_IDLE)  # a next request, or the client reading its answers
                return
            plan = self._waiting_plan
            if plan is None:
                end = buf.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
                if end < 0:
                    if len(buf) >= MAX_HEAD_BYTES or not buf[:1].isalpha() or b"\n\n" in buf:
                        self._hand_off()  # an oversized or garbled head, bare LFs: aiohttp answers it
                    else:
                        self._expect(_HEAD)
                    return
                head_end = end + 4
                plan = plan_request(buf[:head_end], self._routes, self._max_body)
                if plan is None:
                    self._hand_off()
                    return
                if plan.route is None:
                    self._pass(head_end + plan.length)
                    continue
                self._waiting_plan, self._front_total = plan, head_end + plan.length
            total = self._front_total
            if len(buf) < total:
                self._expect(_BODY)  # the rest of the body (within the app's body limit)
                return
            self._waiting_plan, self._front_total = None, 0
            route, headers, match_info = plan.route, plan.headers, plan.match_info
            assert route is not None and headers is not None and match_info is not None  # a hot route's plan
            request = HotRequest(self._app, plan.method, plan.path, headers, buf[total - plan.length:total],
                                 self._remote, match_info)
            self._buffer = buf[total:]
            self.hot_busy = True
            task = self._loop.create_task(self._answer(route.handler, request, plan.keep_alive,
                                                        plan.version11))
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
        transport.write(data)  # one answer at most beyond the write buffer's limit (see pause_writing)
        if not keep_alive or self._closing:
            self._close()
            return
        self._resume()

    def _aiohttp(self) -> web.RequestHandler:
        """aiohttp's protocol for this connection, made on first use, seeing it through a view."""
        general = self._general
        if general is None:
            transport = self._transport
            assert transport is not None  # called while connected
            general = self._general = self._passing()
            general.connection_made(_TransportView(self, transport))
        return general

    def _pass(self, total: int) -> None:
        """Pass the request of ``total`` bytes at the start of the buffer (what of it has arrived)
        to aiohttp's protocol for this connection; the rest of its body follows as it arrives."""
        general = self._aiohttp()
        buf = self._buffer
        now, self._buffer = buf[:total], buf[total:]
        self._general_remaining = total - len(now)
        self._general_busy = True
        self._site.count_passed()
        general.data_received(now)

    def general_answered(self, keep_alive: bool | None) -> None:
        """aiohttp has written its whole answer to the request passed to it (see _Answered)."""
        if not self._general_busy:
            return  # handed off: aiohttp's own from there on
        self._general_busy = False
        if not keep_alive:
            self._closing = True  # aiohttp closes the connection itself
            return
        if self._closing:
            self._close()
            return
        self._expect(_IDLE)
        if self._buffer:  # pipelined: after aiohttp's own bookkeeping of this answer
            self._loop.call_soon(self._resume)
        else:
            self._update_reading()

    def _hand_off(self) -> None:
        """From here on aiohttp reads this connection, starting with the bytes not yet answered;
        this protocol stays in front to keep the connection's flow control and deadlines."""
        assert self._transport is not None and not self._busy
        self._handed_off = True
        self._site.forget(self)
        self._site.count_handed_off()
        pending, self._buffer = self._buffer, b""
        self._waiting_plan, self._front_total = None, 0
        self._expect(None)
        self._frames = _Frames(self)
        general = self._aiohttp()
        self._follow(pending)
        general.data_received(pending)
        self._update_reading()  # nothing of ours is held now: aiohttp's wish alone counts

    def _follow(self, data: bytes) -> None:
        """Follow a handed-off connection's requests (their heads and bodies' ends) for deadlines."""
        frames = self._frames
        if frames is None or not data:
            return
        try:
            frames.parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError):
            # a protocol switch (aiohttp's stream from here on) or a request aiohttp refuses
            # (a 400, and the connection closed): nothing more to follow
            self._frames = None
            self._expect(None)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


__all__ = ["BODY_TIMEOUT_S", "HEAD_TIMEOUT_S", "HOT_ROUTES", "KEEPALIVE_S", "MAX_BUFFERED_BYTES", "HotProtocol",
           "HotRequest", "HotResponse", "HotRoute", "HotRoutes", "HotSite", "add_hot_routes", "encode_response",
           "make_site", "plan_request"]
