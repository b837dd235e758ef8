"""The edge: what every request of every service passes through, applied to each route's handler.

For each request, outermost first:
- a request id, kept from a well-formed ``X-Request-Id`` or new, in the logs' context and in the
  response's ``X-Request-Id``;
- the in-flight gauge and the latency histogram, labelled by route template;
- the CSRF guard (stagedoor/security.py), which raises a StagedoorError to refuse;
- problem+json for every error: StagedoorError, aiohttp's HTTP errors, a Redis that cannot serve
  for now (unreachable, loading, out of memory, read-only, cluster down: errors.redis_unavailable_reason)
  as a 503 with Retry-After (logged at most once a second per process), and anything else as a
  generic 500 (logged, no stack trace to the client);
- the security headers of stagedoor/security.py (CSP, nosniff, frame-ancestors...).

Why a handler wrapper and not an aiohttp middleware: with any middleware at all, aiohttp runs
every request through its own middleware layer as well (``_fix_request_current_app``, a
partial per layer). On a status poll that machinery cost about as much as our handler's own
work. So routes are registered with :func:`add_routes` (or :func:`add_route`), which wraps their
handler, and the app has no middleware. What a middleware gave for free is done here:
- unmatched paths and methods reach a catch-all route (added at startup, so it is last), which
  answers 404 or 405 (with ``Allow``) as problem+json;
- at startup, every route is checked to be wrapped, so a raw ``app.router.add_get`` fails
  loudly instead of silently skipping the edge;
- a handler that streams (prepares its response itself: SSE) takes its headers from
  :func:`stream_headers` before it prepares.

The hot path (stagedoor/hot_http/) puts the same :meth:`Edge.wrap` around its handlers, so a
status poll or a join gets the same request id, metrics, guard, problems and headers whichever
way it is served.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web
from redis.exceptions import RedisError

from stagedoor import errors
from stagedoor.logs import request_id_var
from stagedoor.metrics import BaseMetrics
from stagedoor.problems import HTTP_CODES, problem_response, render_error, render_http_exception
from stagedoor.request_view import RequestView, ResponseView
from stagedoor.security import NON_HTML_HEADERS, csrf_guard, html_headers
from stagedoor.settings import Settings

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Req = TypeVar("Req", bound=RequestView)  # web.Request, or a hot route's HotRequest
Resp = TypeVar("Resp", bound=ResponseView)  # web.StreamResponse, or a hot route's HotResponse

UNMATCHED = "unmatched"  # the route label of the catch-all (bounded: never the raw path)
REDIS_WARNING_EVERY_S = 1.0  # an outage meets every request: one log line a second, not one per request
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _RequestIds:
    """New request ids: a random 64-bit prefix per process and a counter (32 hex digits, unique
    across processes and restarts without a getrandom() call per request)."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


_request_ids = _RequestIds()


_redis_warned_at = float("-inf")


def _warn_redis_unavailable(request: RequestView, reason: str, exc: Exception) -> None:
    global _redis_warned_at
    now = time.monotonic()
    if now - _redis_warned_at >= REDIS_WARNING_EVERY_S:
        _redis_warned_at = now
        logger.warning("redis_unavailable", extra={"reason": reason, "path": request.path, "error": str(exc)})


def _internal_error(request: RequestView, metrics: BaseMetrics) -> web.Response:
    """The 500 of an unexpected exception (call from its ``except``): logged with its traceback,
    answered without internals."""
    logger.exception("unhandled_error", extra={"path": request.path, "method": request.method})
    metrics.problems_total.labels(metrics.app_name, "internal-error", "500").inc()
    return problem_response(500, "internal-error", "Internal server error",
                            "the server failed to complete the request; it has been logged", instance=request.path)


class Edge:
    """One app's edge: its metrics, CSRF guard and security headers, wrapped around handlers."""

    def __init__(self, settings: Settings, metrics: BaseMetrics) -> None:
        self.metrics = metrics
        self.guard = csrf_guard(settings)
        self.html_headers = html_headers(settings)

    def secure(self, headers: Any) -> None:
        """Add the security headers a response of this Content-Type should carry (kept if set)."""
        html = headers.get("Content-Type", "").startswith("text/html")  # the raw header: no parse
        for name, value in self.html_headers if html else NON_HTML_HEADERS:
            headers.setdefault(name, value)

    def wrap(self, handler: Callable[[Req], Awaitable[Resp]], route: str,
             method: str) -> Callable[[Req], Awaitable[Resp | web.Response]]:
        """``handler`` behind the edge; ``route`` is the template its latency is labelled with."""
        metrics, guard, secure = self.metrics, self.guard, self.secure
        problems_total = metrics.problems_total
        in_flight = metrics.in_flight
        observer = metrics.http_request_duration_seconds.observer(metrics.app_name, route, method)
        perf_counter = time.perf_counter

        async def edge(request: Req) -> Resp | web.Response:
            incoming = request.headers.get("X-Request-Id")
            rid = incoming if incoming and _REQUEST_ID_RE.match(incoming) else _request_ids.new()
            token = request_id_var.set(rid)
            in_flight.inc()
            start = perf_counter()
            status = 500
            response: Resp | web.Response
            try:
                try:
                    guard(request)
                    response = await handler(request)
                except errors.StagedoorError as exc:
                    response = render_error(exc, request)
                    problems_total.labels(metrics.app_name, exc.code, str(response.status)).inc()
                except RedisError as exc:
                    reason = errors.redis_unavailable_reason(exc)
                    if reason is None:  # a command Redis refused for good: a bug of ours
                        response = _internal_error(request, metrics)
                    else:
                        _warn_redis_unavailable(request, reason, exc)
                        unavailable = errors.RedisUnavailable(reason)
                        response = render_error(unavailable, request)
                        problems_total.labels(metrics.app_name, unavailable.code, str(response.status)).inc()
                except web.HTTPException as exc:
                    if exc.status < 400:  # redirects pass through, with our headers
                        status = exc.status
                        exc.headers["X-Request-Id"] = rid
                        secure(exc.headers)
                        raise
                    response = render_http_exception(exc, request)
                    problems_total.labels(
                        metrics.app_name, HTTP_CODES.get(exc.status, f"http-{exc.status}"), str(exc.status)).inc()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:
                    response = _internal_error(request, metrics)
                status = response.status
                if not response.prepared:  # a stream took its headers from stream_headers()
                    headers = response.headers
                    headers["X-Request-Id"] = rid
                    secure(headers)
                return response
            finally:
                in_flight.dec()
                observer(status, perf_counter() - start)
                request_id_var.reset(token)

        # attributes on the function object (typeshed's function type declares no others)
        edge.__stagedoor_edge__ = True  # type: ignore[attr-defined]
        edge.__name__ = getattr(handler, "__name__", "handler")
        edge.__wrapped__ = handler  # type: ignore[attr-defined]
        return edge


EDGE = web.AppKey("edge", Edge)


def stream_headers(request: web.Request, content_type: str, **extra: str) -> dict[str, str]:
    """The headers a streaming handler (one that prepares its own response) must send, ``extra``
    included: the edge cannot add them after the handler returns, the head being on the wire by
    then. ``content_type`` picks the security headers; it is not among those returned (the
    streaming helper sets it)."""
    headers = {"Content-Type": content_type, **extra}
    rid = request_id_var.get()
    if rid:
        headers["X-Request-Id"] = rid
    request.app[EDGE].secure(headers)
    del headers["Content-Type"]
    return headers


def add_route(app: web.Application, method: str, path: str, handler: Handler, *, name: str | None = None,
              allow_head: bool = True, label: str | None = None) -> web.AbstractRoute:
    """Register one route behind the app's edge (a GET answers HEAD too, as ``add_get`` does).
    ``label`` is its route label in the metrics (default: the resource's canonical template,
    ``/{tail:.*}`` -> ``/{tail}``)."""
    edge = app[EDGE]
    resource = app.router.add_resource(path, name=name)
    label = label or resource.canonical
    if method == "GET" and allow_head:
        resource.add_route("HEAD", edge.wrap(handler, label, "HEAD"))
    return resource.add_route(method, edge.wrap(handler, label, method))


def add_routes(app: web.Application, routes: Iterable[web.AbstractRouteDef]) -> None:
    """Register a RouteTableDef (an :class:`~stagedoor.openapi.Api`'s routes) behind the app's edge."""
    for route in routes:
        if not isinstance(route, web.RouteDef):
            raise TypeError(f"only plain routes go behind the edge, not {route!r}")
        add_route(app, route.method, route.path, route.handler, **route.kwargs)


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """No route has this path (404), or none with this method (405 with Allow)."""
    allowed: set[str] = set()
    catch_all = request.app[_CATCH_ALL]
    for resource in request.app.router.resources():
        if resource is catch_all:
            continue
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


_CATCH_ALL = web.AppKey("edge_catch_all", web.AbstractResource)


async def _finish_routes(app: web.Application) -> None:
    """At startup, before the router freezes: refuse routes that bypass the edge, then add the
    catch-all last (a route registered after it under ``/`` would be shadowed)."""
    unwrapped = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in app.router.routes()
        if not getattr(route.handler, "__stagedoor_edge__", False)
    ]
    if unwrapped:
        raise RuntimeError(f"routes registered without the edge (use stagedoor.edge.add_route): {unwrapped}")
    resource = add_route(app, "*", "/{tail:.*}", _unmatched, label=UNMATCHED).resource
    assert resource is not None  # a route added through a resource has it
    app[_CATCH_ALL] = resource


def install(app: web.Application, settings: Settings, metrics: BaseMetrics) -> Edge:
    """Give ``app`` its edge; call before registering routes. The startup check and the catch-all
    run first among the app's startup hooks."""
    edge = app[EDGE] = Edge(settings, metrics)
    app.on_startup.insert(0, _finish_routes)
    return edge


__all__ = ["EDGE", "UNMATCHED", "Edge", "add_route", "add_routes", "install", "stream_headers"]
