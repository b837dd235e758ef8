"""Security headers on every response (HTML pages above all) and the CSRF guard on cookie-authenticated writes."""

from __future__ import annotations

import re
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp import web

from stagedoor.cli import COMPONENTS
from stagedoor.edge import stream_headers
from stagedoor.errors import NotFound
from stagedoor.hot_http import HotResponse
from stagedoor.metrics import BaseMetrics
from stagedoor.openapi import Api
from stagedoor.security import set_cookie
from stagedoor.settings import Settings
from stagedoor.web import SETTINGS, base_app, json_response
from tests.support.abuse import assert_html_hardened


def page_app(settings: Settings) -> web.Application:
    api = Api(tag="test")

    @api.get("/page", summary="html", response="text", response_content_type="text/html")
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>q</title>", content_type="text/html")

    @api.get("/json", summary="json")
    async def as_json(request: web.Request) -> web.Response:
        return json_response({"ok": True})

    @api.get("/redirect", summary="redirect")
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/page")

    @api.get("/missing", summary="error")
    async def missing(request: web.Request) -> web.Response:
        raise NotFound("no such thing")

    @api.get("/stream", summary="a stream prepared by the handler itself, with the edge's stream_headers")
    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           **stream_headers(request, "text/event-stream")})
        await resp.prepare(request)
        await resp.write(b"data: {}\n\n")
        return resp

    @api.post("/state", summary="a cookie-authenticated write")
    async def state(request: web.Request) -> web.Response:
        resp = json_response({"changed": True})
        set_cookie(resp, request.app[SETTINGS], "sd_queue", "token-value", max_age_s=600)
        return resp

    return base_app(settings, BaseMetrics("sectest"), [api], title="security test", uses_redis=False, uses_db=False)


@pytest.fixture
async def client(aiohttp_client: Any, abuse_settings: Callable[..., Settings]) -> Any:
    return await aiohttp_client(page_app(abuse_settings(public_ticketing_url="https://shop.example.test")))


# ---------------------------------------------------------------- headers

async def test_html_pages_carry_the_security_headers(client: Any) -> None:
    resp = await client.get("/page")
    assert_html_hardened(resp.headers, "/page")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "https://shop.example.test" in csp  # our shop may be posted to
    assert "Strict-Transport-Security" not in resp.headers  # cookie_secure=false: local http


async def test_hsts_is_sent_when_the_site_runs_on_https(aiohttp_client: Any,
                                                        abuse_settings: Callable[..., Settings]) -> None:
    client = await aiohttp_client(page_app(abuse_settings(cookie_secure=True)))
    assert (await client.get("/page")).headers["Strict-Transport-Security"].startswith("max-age=31536000")


@pytest.mark.parametrize("path", ["/json", "/missing", "/redirect", "/stream", "/no-such-route"])
async def test_every_other_response_is_nosniff_and_unframeable(client: Any, path: str) -> None:
    resp = await client.get(path, allow_redirects=False)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


# ---------------------------------------------------------------- CSRF

COOKIE = {"Cookie": "sd_queue=abc"}


@pytest.mark.parametrize(("headers", "reason"), [
    ({"Origin": "https://evil.example"}, "origin_mismatch"),
    ({"Origin": "null"}, "null_origin"),
    ({"Referer": "https://evil.example/page"}, "referer_mismatch"),
    ({"Sec-Fetch-Site": "cross-site"}, "cross_site"),
    ({"Origin": "https://shop.example.test.evil.example"}, "origin_mismatch"),
])
async def test_cross_site_cookie_writes_are_refused(client: Any, headers: dict[str, str], reason: str) -> None:
    resp = await client.post("/state", headers={**COOKIE, **headers})
    assert resp.status == 403
    body = await resp.json()
    assert body["type"] == "/problems/csrf-refused" and body["reason"] == reason
    assert "Set-Cookie" not in resp.headers
    metrics = await (await client.get("/metrics")).text()
    assert f'stagedoor_csrf_rejections_total{{app="sectest",reason="{reason}"}} 1.0' in metrics


async def test_same_origin_and_non_browser_writes_pass(client: Any) -> None:
    own = f"http://{client.server.host}:{client.server.port}"
    for headers in ({"Origin": own}, {"Referer": own + "/rooms/x"}, {"Origin": "https://shop.example.test"},
                    {"Sec-Fetch-Site": "same-origin", "Origin": own}, {}):
        resp = await client.post("/state", headers={**COOKIE, **headers})
        assert resp.status == 200, headers


@pytest.mark.parametrize("credentials", [{}, {"Authorization": "Bearer x"}, {**COOKIE, "Authorization": "Bearer x"}],
                         ids=["cookieless", "bearer", "bearer-and-cookie"])
async def test_cross_site_writes_are_refused_without_a_cookie_too(client: Any, credentials: dict[str, str]) -> None:
    # a cookie-less cross-site POST is a forgery all the same (it creates, or replaces, state)
    for headers, reason in (({"Origin": "https://evil.example"}, "origin_mismatch"),
                            ({"Origin": "null"}, "null_origin"), ({"Sec-Fetch-Site": "cross-site"}, "cross_site")):
        resp = await client.post("/state", headers={**credentials, **headers})
        assert resp.status == 403 and (await resp.json())["reason"] == reason, headers
        assert "Set-Cookie" not in resp.headers


async def test_non_browser_writes_and_cross_site_reads_pass(client: Any) -> None:
    assert (await client.post("/state")).status == 200  # no Origin, no Sec-Fetch-Site: curl, a server
    client.session.cookie_jar.clear()  # (the answer set a cookie)
    assert (await client.post("/state", headers={"Referer": "https://evil.example/"})).status == 200  # no cookie
    assert (await client.get("/json", headers={**COOKIE, "Origin": "https://evil.example",
                                               "Sec-Fetch-Site": "cross-site"})).status == 200


async def test_cookies_are_httponly_samesite_strict_and_secure_by_setting(
        client: Any, aiohttp_client: Any, abuse_settings: Callable[..., Settings]) -> None:
    cookie = (await client.post("/state")).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=600" in cookie
    assert "Secure" not in cookie  # cookie_secure=false: local http
    https = await aiohttp_client(page_app(abuse_settings(cookie_secure=True)))
    assert "Secure" in (await https.post("/state")).headers["Set-Cookie"]


# ---------------------------------------------------------------- every page the services serve

def _sample_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "demo", path)


@pytest.mark.parametrize("service", sorted(COMPONENTS))
async def test_every_html_page_of_every_service_is_hardened(service: str, service_client: Any) -> None:
    client = await service_client(service)
    app = client.server.app
    checked = []
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if not path or not any(route.method == "GET" for route in resource):
            continue
        resp = await client.get(_sample_path(path), headers={"Accept": "text/html"}, allow_redirects=False)
        await resp.read()
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
        if resp.content_type == "text/html":
            assert_html_hardened(resp.headers, f"{service} GET {path} ({resp.status})")
            checked.append(path)
    # A page the router does not know is rendered too: make sure whatever comes back is hardened.
    resp = await client.get("/no-such-page", headers={"Accept": "text/html"})
    if resp.content_type == "text/html":
        assert_html_hardened(resp.headers, f"{service} 404 page")


@pytest.mark.parametrize("secure", [True, False])
def test_a_cookie_value_that_needs_quoting_is_quoted_alike_on_both_kinds_of_response(
        abuse_settings: Callable[..., Settings], secure: bool) -> None:
    settings = abuse_settings(cookie_secure=secure)
    plain, hot = web.Response(), HotResponse(b"")
    for response in (plain, hot):
        set_cookie(response, settings, "sd_x", 'a value; with "quotes"', max_age_s=60, samesite="Lax")
    [header] = hot.headers.getall("Set-Cookie")
    assert plain.headers.getall("Set-Cookie") == [header]
    parsed: SimpleCookie = SimpleCookie(header)
    morsel = parsed["sd_x"]
    assert morsel.value == 'a value; with "quotes"'
    assert (morsel["httponly"], morsel["max-age"], morsel["path"], morsel["samesite"]) == (True, "60", "/", "Lax")
    assert bool(morsel["secure"]) is secure
