"""RFC 9457 problem+json rendering and the middlewares every service shares.

The one class-to-status table lives here. Any ``StagedoorError`` becomes
``application/problem+json`` with ``type`` ``/problems/<code>``; aiohttp's own HTTP
errors (404 route, 405, 413) get the same shape; anything else is a 500 with a
generic body and a logged traceback (no stack trace ever reaches a client).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from stagedoor import errors
from stagedoor.logs import request_id_var
from stagedoor.metrics import BaseMetrics

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

STATUS_BY_CATEGORY: tuple[tuple[type[errors.StagedoorError], int], ...] = (
    (errors.BadRequest, 400),
    (errors.Unauthorized, 401),
    (errors.PaymentRequired, 402),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Gone, 410),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.InvalidInput, 422),
    (errors.RateLimited, 429),
    (errors.BadGateway, 502),
    (errors.Unavailable, 503),
)

REQUEST_ID = web.RequestKey("request_id", str)
METRICS_KEY = web.AppKey("metrics", BaseMetrics)

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
_ENCODER = msgspec.json.Encoder()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_of(exc: errors.StagedoorError) -> int:
    for category, status in STATUS_BY_CATEGORY:
        if isinstance(exc, category):
            return status
    return 500


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    rid = request_id_var.get()
    if rid:
        body["request_id"] = rid
    body.update(extra)
    return web.Response(
        status=status,
        body=_ENCODER.encode(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def render_error(exc: errors.StagedoorError, request: web.Request | None = None) -> web.Response:
    status = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    elif isinstance(exc, errors.Unavailable) and exc.retry_after_s:
        headers["Retry-After"] = str(exc.retry_after_s)
    elif isinstance(exc, errors.Unauthorized):
        challenge = exc.extra.pop("challenge", None) or 'Bearer realm="stagedoor"'
        headers["WWW-Authenticate"] = challenge
    return problem_response(
        status, exc.code, exc.title, exc.detail,
        instance=request.path if request is not None else None,
        headers=headers, **exc.extra,
    )


_HTTP_CODES = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 406: "not-acceptable", 413: "payload-too-large",
    415: "unsupported-media-type", 429: "rate-limited",
}


def _render_http_exception(exc: web.HTTPException, request: web.Request) -> web.Response:
    status = exc.status
    code = _HTTP_CODES.get(status, f"http-{status}")
    detail = exc.text if exc.text and not exc.text.startswith(f"{status}:") else exc.reason
    if status == 413:
        detail = "request body exceeds the configured limit"
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
    return problem_response(status, code, exc.reason, detail, instance=request.path, headers=headers)


def edge_middleware(guard: Callable[[web.Request], None] | None = None) -> Any:
    """The one middleware every request passes through, outermost first: a request id (kept from
    a well-formed ``X-Request-Id``, else new; in the logs' context and the response header), the
    in-flight gauge and the latency histogram, problem+json for every error (no stack trace to
    clients; 5xx logged), then ``guard(request)`` (the CSRF guard, stagedoor/security.py: raises
    a StagedoorError to refuse). One coroutine layer instead of four: on a status poll the
    layers themselves were a measurable share of the request."""

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id")
        rid = incoming if incoming and _REQUEST_ID_RE.match(incoming) else _request_ids.new()
        request[REQUEST_ID] = rid
        token = request_id_var.set(rid)
        metrics = request.app[METRICS_KEY]
        in_flight = metrics.in_flight
        in_flight.inc()
        start = time.perf_counter()
        status = 500
        try:
            try:
                if guard is not None:
                    guard(request)
                response = await handler(request)
            except errors.StagedoorError as exc:
                code, response = exc.code, render_error(exc, request)
                metrics.problems_total.labels(metrics.app_name, code, str(response.status)).inc()
            except web.HTTPException as exc:
                if exc.status < 400:  # redirects pass through
                    exc.headers["X-Request-Id"] = rid
                    status = exc.status
                    raise
                code = _HTTP_CODES.get(exc.status, f"http-{exc.status}")
                response = _render_http_exception(exc, request)
                metrics.problems_total.labels(metrics.app_name, code, str(response.status)).inc()
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception:
                logger.exception("unhandled_error", extra={"path": request.path, "method": request.method})
                response = problem_response(
                    500, "internal-error", "Internal server error",
                    "the server failed to complete the request; it has been logged", instance=request.path,
                )
                metrics.problems_total.labels(metrics.app_name, "internal-error", "500").inc()
            status = response.status
            response.headers["X-Request-Id"] = rid
            return response
        finally:
            in_flight.dec()
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            metrics.request_duration(metrics.app_name, route, request.method, str(status)).observe(
                time.perf_counter() - start)
            request_id_var.reset(token)

    return edge
