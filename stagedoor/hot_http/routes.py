"""What a hot route sees and answers (:class:`HotRequest`, :class:`HotResponse`) and how an app
registers its hot routes, behind its edge."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

# what web.Request.cookies parses with; aiohttp's typing marks it private there (imported, not re-exported)
from aiohttp.web_request import parse_cookie_header  # type: ignore[attr-defined]
from multidict import CIMultiDict

from stagedoor.edge import EDGE
from stagedoor.hot_http.limits import _HOST


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
