"""The SRE admin console (HTML at /console, JS in templates/static/console.js): all rooms
with live stats, rate and max-active changes, pause/resume and evictions through the admin
API of this same service (same origin, so no CORS); user roles and blocking, the events
report and the admins' email + password sign-in (the OAuth2 password grant) go to the
ticketing service through small proxies that forward the caller's own credentials.
"""

from __future__ import annotations

import logging
import re

import aiohttp
from aiohttp import web

from stagedoor import errors
from stagedoor.pages import render
from stagedoor.payment_pages import no_real_money_notice
from stagedoor.web import SETTINGS

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

USER_ID_RE = re.compile(r"^[0-9a-fA-F-]{36}$")
PROXY_TIMEOUT_S = 5.0


@routes.get("/console")
async def console_page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    html = render("console.html", path=request.path, waitingroom_url=settings.url_of("waitingroom"),
                  ticketing_url=settings.url_of("ticketing"), test_mode=no_real_money_notice(settings))
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


async def _forward(request: web.Request, method: str, path: str, *,
                   query: dict[str, str] | None = None) -> web.Response:
    """Send the request to ticketing with the caller's own bearer token; relay the answer."""
    settings = request.app[SETTINGS]
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise errors.PayloadTooLarge(f"body exceeds the {limit} byte limit", limit_bytes=limit)
    body = await request.read() if method != "GET" else None
    headers = {"Content-Type": "application/json"}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"][:4096]
    url = f"{settings.url_of('ticketing').rstrip('/')}{path}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S)) as session, \
                session.request(method, url, data=body, headers=headers, params=query) as upstream:
            payload = await upstream.read()
            ctype = upstream.headers.get("Content-Type", "application/json")
            return web.Response(body=payload, status=upstream.status,
                                headers={"Content-Type": ctype, "Cache-Control": "no-store"})
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("console_proxy_failed", extra={"error": type(exc).__name__})
        raise errors.DependencyUnavailable("the ticketing service is not reachable", retry_after_s=2) from None


@routes.get("/console/api/users")
async def users_proxy(request: web.Request) -> web.Response:
    """GET /api/users on ticketing (admin listing: q = email prefix, limit, cursor)."""
    query = {k: request.query[k][:254] for k in ("q", "limit", "cursor") if request.query.get(k)}
    return await _forward(request, "GET", "/api/users", query=query)


@routes.get("/console/api/events")
async def events_proxy(request: web.Request) -> web.Response:
    """GET /api/organizer/events on ticketing (an admin sees every event: status, sold, free, room)."""
    query = {k: request.query[k][:64] for k in ("status", "organizer_id", "limit", "cursor") if request.query.get(k)}
    return await _forward(request, "GET", "/api/organizer/events", query=query)


TOKEN_GRANTS = frozenset({"password", "refresh_token"})
TOKEN_FIELDS = ("grant_type", "username", "password", "refresh_token", "scope")
TOKEN_FIELD_MAX = 4096


@routes.post("/console/api/token")
async def token_proxy(request: web.Request) -> web.Response:
    """Email + password sign-in for admins: the OAuth2 password grant (and refresh_token, to stay
    signed in past the access token's few minutes) of ticketing's POST /oauth/token, same-origin,
    answered in RFC 6749 JSON. Only these two grants and their fields pass; nothing is logged."""
    settings = request.app[SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise errors.PayloadTooLarge(f"body exceeds the {settings.max_body_bytes} byte limit",
                                     limit_bytes=settings.max_body_bytes)
    if request.content_type != "application/x-www-form-urlencoded":
        return _oauth_error(400, "invalid_request", "send application/x-www-form-urlencoded")
    form = await request.post()
    if form.get("grant_type") not in TOKEN_GRANTS:
        return _oauth_error(400, "unsupported_grant_type", "the console signs in with password or refresh_token")
    fields = {k: str(form[k]) for k in TOKEN_FIELDS if k in form}
    if any(len(v) > TOKEN_FIELD_MAX for v in fields.values()):
        return _oauth_error(400, "invalid_request", "a field is too long")
    url = f"{settings.url_of('ticketing').rstrip('/')}/oauth/token"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S)) as session, \
                session.post(url, data=fields, headers=_forwarded_for(request)) as upstream:
            payload = await upstream.read()
            headers = {"Content-Type": upstream.headers.get("Content-Type", "application/json"),
                       "Cache-Control": "no-store"}
            if "Retry-After" in upstream.headers:
                headers["Retry-After"] = upstream.headers["Retry-After"]
            return web.Response(body=payload, status=upstream.status, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("console_proxy_failed", extra={"error": type(exc).__name__})
        raise errors.DependencyUnavailable("the ticketing service is not reachable", retry_after_s=2) from None


def _forwarded_for(request: web.Request) -> dict[str, str]:
    """The visitor's address for ticketing's login limits; ticketing honours it only when this
    service is in its STAGEDOOR_TRUSTED_PROXIES (otherwise all console sign-ins share our IP)."""
    chain = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()][-8:]
    if request.remote:
        chain.append(request.remote)
    return {"X-Forwarded-For": ", ".join(chain)[:512]} if chain else {}


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status,
                             headers={"Cache-Control": "no-store"})


@routes.patch("/console/api/users/{user_id}")
async def user_proxy(request: web.Request) -> web.Response:
    """PATCH /api/users/{id} on ticketing (roles, blocked) with the caller's bearer token."""
    user_id = request.match_info["user_id"]
    if not USER_ID_RE.match(user_id):
        raise web.HTTPNotFound()
    return await _forward(request, "PATCH", f"/api/users/{user_id}")
