"""RFC 9457 problem+json rendering (stagedoor/edge.py applies it to every request).

The one class-to-status table lives here. Any ``StagedoorError`` becomes
``application/problem+json`` with ``type`` ``/problems/<code>``; aiohttp's own HTTP
errors (404 route, 405, 413) get the same shape; anything else is a 500 with a
generic body and a logged traceback (no stack trace ever reaches a client): the edge does that.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from stagedoor import errors
from stagedoor.logs import request_id_var
from stagedoor.metrics import BaseMetrics
from stagedoor.request_view import RequestView

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

METRICS_KEY = web.AppKey("metrics", BaseMetrics)

_ENCODER = msgspec.json.Encoder()


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


def render_error(exc: errors.StagedoorError, request: RequestView | None = None) -> web.Response:
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


HTTP_CODES = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 406: "not-acceptable", 413: "payload-too-large",
    415: "unsupported-media-type", 429: "rate-limited",
}


def render_http_exception(exc: web.HTTPException, request: RequestView) -> web.Response:
    status = exc.status
    code = HTTP_CODES.get(status, f"http-{status}")
    detail = exc.text if exc.text and not exc.text.startswith(f"{status}:") else exc.reason
    if status == 413:
        detail = "request body exceeds the configured limit"
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
    return problem_response(status, code, exc.reason, detail, instance=request.path, headers=headers)
