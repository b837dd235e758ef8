"""Listening: :class:`HotSite` (every connection through :class:`HotProtocol`) or aiohttp's own
``TCPSite`` when the layer is off (``make_site``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from stagedoor.hot_http.limits import BODY_TIMEOUT_S, HEAD_TIMEOUT_S, KEEPALIVE_S, SHUTDOWN_TIMEOUT_S
from stagedoor.hot_http.protocol import HotProtocol
from stagedoor.hot_http.routes import HOT_ROUTES, HotRoutes
from stagedoor.hot_http.transport import _TransportView
from stagedoor.metrics import Count
from stagedoor.problems import METRICS_KEY

logger = logging.getLogger(__name__)

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
