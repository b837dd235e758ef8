"""Browser-facing hardening shared by every service: security headers, a CSRF guard, cookies.

Headers (set by the edge, stagedoor/edge.py, on every response: handlers, errors, redirects and
static files; a stream takes them from ``stream_headers()`` before it starts):
- every response: ``X-Content-Type-Options: nosniff``;
- HTML: a CSP with no inline script (``script-src 'self'``; styles may be inline, scripts never;
  the checkout page adds its card field's origins, ``html_csp``),
  ``frame-ancestors 'none'`` + ``X-Frame-Options: DENY``, ``Referrer-Policy: same-origin``,
  ``Permissions-Policy``, ``Cross-Origin-Opener-Policy``; HSTS when cookies are Secure
  (i.e. the site is served over https);
- anything else (JSON, SVG, text): ``Content-Security-Policy: default-src 'none'; frame-ancestors 'none'``.

CSRF (run by the edge before every handler, hot routes included): an unsafe request (POST, PUT,
PATCH, DELETE) that a browser sent from another site is refused, whether or not it carries a
cookie (a cookie-less cross-site POST is a forgery too: it would make a new visitor and replace
the fan's queue cookie). An ``Origin`` header decides when there is one: ``null`` is refused, and
it must name the request's own host, one of the services' URLs or an origin of
``STAGEDOOR_ALLOWED_ORIGINS``; an origin configured there passes even when the browser marks the
request ``Sec-Fetch-Site: cross-site`` (that is what allowing it means). Without an ``Origin``,
``Sec-Fetch-Site: cross-site`` is refused, and a cookie-authenticated request (a Cookie and no
``Authorization``) must carry a ``Referer`` of the same origins, if any. A request with none of
these headers is not from a current browser (they all send Origin on POSTs, and Sec-Fetch-Site)
and passes: curl, server-to-server calls, load tests. The guard reads headers only: it is on the
path of every join. Cookies set with :func:`set_cookie` are HttpOnly, SameSite=Strict and Secure
unless ``STAGEDOOR_COOKIE_SECURE=false`` (local http): the Origin check is the second line behind
SameSite.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from http.cookies import SimpleCookie
from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp import web

from stagedoor.client_ip import parse_networks
from stagedoor.errors import Forbidden
from stagedoor.problems import METRICS_KEY
from stagedoor.request_view import RequestView
from stagedoor.settings import Settings, SettingsError

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SERVICES: tuple[Literal["waitingroom", "ticketing", "admission", "worker"], ...] = (
    "waitingroom", "ticketing", "admission", "worker")

NON_HTML_CSP = "default-src 'none'; frame-ancestors 'none'"
NON_HTML_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", NON_HTML_CSP))
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"


class CsrfRefused(Forbidden):
    code = "csrf-refused"
    title = "Cross-site request refused"


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


@lru_cache(maxsize=16)
def service_origins(settings: Settings) -> tuple[str, ...]:
    """The origins of our own services (public URLs when set, else host:port)."""
    origins = {_origin_of(settings.url_of(name)) for name in SERVICES}
    return tuple(sorted(o for o in origins if o))


@lru_cache(maxsize=32)
def html_csp(settings: Settings, *, script: tuple[str, ...] = (), frame: tuple[str, ...] = (),
             connect: tuple[str, ...] = ()) -> str:
    """The pages' Content-Security-Policy. A page that runs a third party's script (the checkout page's
    card field) names that party's origins: ``script`` (script-src), ``frame`` (a frame-src of only
    those; without it frames fall back to default-src 'self') and ``connect`` (connect-src)."""
    ours = " ".join(service_origins(settings))
    return "; ".join((
        "default-src 'self'",
        " ".join(("script-src 'self'", *script)),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        " ".join(("connect-src 'self'", *service_origins(settings), *connect)),
        f"form-action 'self' {ours}".rstrip(),
        *((" ".join(("frame-src", *frame)),) if frame else ()),
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ))


@lru_cache(maxsize=16)
def html_headers(settings: Settings) -> tuple[tuple[str, str], ...]:
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", html_csp(settings)),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Permissions-Policy", PERMISSIONS_POLICY),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if settings.cookie_secure:
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return tuple(headers)


def parse_allowed_origins(text: str) -> tuple[str, ...]:
    """``STAGEDOOR_ALLOWED_ORIGINS``: comma-separated ``scheme://host[:port]`` origins (http or
    https, no path, query or user info), lower-cased; SettingsError names the bad entry."""
    origins = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            parts = urlsplit(entry)
            parts.port  # noqa: B018 (a port that is not a number raises here)
        except ValueError:
            parts = None
        if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
                or parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc
                or "*" in entry):
            raise SettingsError(f"invalid STAGEDOOR_ALLOWED_ORIGINS entry {entry!r}: expected an origin "
                                "such as https://tickets.example.com (scheme, host and optional port only)")
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(origins)


@lru_cache(maxsize=16)
def allowed_origins(settings: Settings) -> frozenset[str]:
    """The origins an unsafe request may come from besides the request's own host: our services'
    and the configured ones."""
    return frozenset(service_origins(settings)) | frozenset(parse_allowed_origins(settings.allowed_origins))


def _is_allowed(origin: str, own_host: str, allowed: frozenset[str]) -> bool:
    if origin in allowed:  # the usual case, as the browser spells it: no parse
        return True
    normalized = _origin_of(origin)
    return normalized is not None and (normalized in allowed or normalized.split("://", 1)[1] == own_host.lower())


def csrf_refusal(request: RequestView, allowed: frozenset[str]) -> str | None:
    """Why this unsafe request is refused as cross-site, or None when it may proceed (the rules
    are the module docstring's)."""
    headers = request.headers
    origin = headers.get("Origin")
    if origin is not None:
        origin = origin.strip()
        if origin.lower() == "null":
            return "null_origin"
        return None if _is_allowed(origin, request.host, allowed) else "origin_mismatch"
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() == "cross-site":
        return "cross_site"
    referer = headers.get("Referer")
    if referer is not None and "Cookie" in headers and "Authorization" not in headers:
        normalized = _origin_of(referer)
        if normalized is None or not _is_allowed(normalized, request.host, allowed):
            return "referer_mismatch"
    return None


def csrf_guard(settings: Settings) -> Callable[[RequestView], None]:
    """The CSRF check the edge (stagedoor/edge.py) runs before every handler: raises CsrfRefused
    for an unsafe request a browser sent from another site."""
    allowed = allowed_origins(settings)

    def guard(request: RequestView) -> None:
        if request.method in UNSAFE_METHODS:
            reason = csrf_refusal(request, allowed)
            if reason is not None:
                metrics = request.app.get(METRICS_KEY)
                if metrics is not None:
                    metrics.csrf_rejections_total.labels(metrics.app_name, reason).inc()
                raise CsrfRefused("this request must come from one of our own pages", reason=reason)

    return guard


_COOKIE_SAFE = re.compile(r"^[A-Za-z0-9._~+=-]{1,4096}$")  # cookie-octets that need no quoting
_PATH_SAFE = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")


@lru_cache(maxsize=64)
def _cookie_attributes(max_age_s: int | None, path: str, samesite: str, secure: bool) -> str:
    parts = ["", "HttpOnly"]
    if max_age_s is not None:
        parts.append(f"Max-Age={int(max_age_s)}")
    parts += [f"Path={path}", f"SameSite={samesite}"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def set_cookie(response: web.StreamResponse | Any, settings: Settings, name: str, value: str, *,
               max_age_s: int | None = None, path: str = "/",
               samesite: Literal["Strict", "Lax"] = "Strict") -> None:
    """Set a cookie the way every stagedoor cookie is set: HttpOnly, SameSite, Secure per settings.

    Tokens (the usual value) are written as the header directly: a SimpleCookie morsel costs more
    than the rest of a status poll's response; anything else is quoted by a morsel, as aiohttp's
    ``set_cookie`` does. Only the headers are touched, so a hot route's response
    (stagedoor/hot_http/) takes cookies the same way."""
    if _COOKIE_SAFE.match(value) and _COOKIE_SAFE.match(name) and _PATH_SAFE.match(path):
        attributes = _cookie_attributes(max_age_s, path, samesite, settings.cookie_secure)
        response.headers.add("Set-Cookie", f"{name}={value}{attributes}")
        return
    cookie: SimpleCookie = SimpleCookie()
    cookie[name] = value
    morsel = cookie[name]
    morsel["httponly"] = True
    if max_age_s is not None:
        morsel["max-age"] = int(max_age_s)
    morsel["path"] = path
    morsel["samesite"] = samesite
    if settings.cookie_secure:
        morsel["secure"] = True
    response.headers.add("Set-Cookie", morsel.OutputString())


def validate_settings(settings: Settings) -> None:
    """Fail at startup (SettingsError) on an unparseable proxy, exemption or origin list."""
    parse_networks(settings.trusted_proxies)
    parse_allowed_origins(settings.allowed_origins)
    parse_networks(settings.rate_limit_exempt_ips, "STAGEDOOR_RATE_LIMIT_EXEMPT_IPS")
