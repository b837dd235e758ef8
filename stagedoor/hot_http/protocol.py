"""One connection: :class:`HotProtocol` serves hot requests itself, passes the others to aiohttp's
``RequestHandler`` on the same connection, and owns reading (paused past a bound, deadlines)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import httptools
from aiohttp import web

from stagedoor.hot_http.limits import _BODY, _HEAD, _IDLE, MAX_BUFFERED_BYTES, MAX_HEAD_BYTES
from stagedoor.hot_http.routes import HotHandler, HotRequest, HotRoute
from stagedoor.hot_http.transport import _Frames, _TransportView
from stagedoor.hot_http.wire import _Plan, encode_response, plan_request

if TYPE_CHECKING:  # the site owns its connections; a connection only reads the site's limits
    from stagedoor.hot_http.site import HotSite

logger = logging.getLogger(__name__)

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


