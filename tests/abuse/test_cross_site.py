"""Cross-site requests through the real services, hot path on and off: an unsafe request a
browser marks as coming from another site is refused (403 csrf-refused) whether or not it
carries a cookie, and changes nothing; a join never replaces a valid queue cookie already held
for the room."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis_asyncio

from stagedoor.cli import COMPONENTS
from stagedoor.queue_tokens import mint_queue_token
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from tests.support.accounts import new_email
from tests.support.rooms import PROBLEM, put_room

EVIL = "https://evil.example"
FORGERIES = [
    pytest.param({"Sec-Fetch-Site": "cross-site"}, "cross_site", id="sec-fetch-site"),
    pytest.param({"Origin": EVIL}, "origin_mismatch", id="foreign-origin"),
    pytest.param({"Origin": "null"}, "null_origin", id="null-origin"),
    pytest.param({"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}, "origin_mismatch", id="both"),
    pytest.param({"Origin": "http://127.0.0.1.evil.example"}, "origin_mismatch", id="lookalike-origin"),
]
FORGED_HEADERS: list[Any] = [p.values[0] for p in FORGERIES]
HOT = pytest.mark.parametrize("hot", [True, False], ids=["hot", "aiohttp"])


async def _cookieless(client: Any, method: str, path: str, headers: dict[str, str], **kw: Any) -> tuple[int, Any, Any]:
    """A request from a browser tab on another site: the SameSite=Lax queue cookie stays home."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session, session.request(
            method, client.make_url(path), headers=headers, allow_redirects=False, **kw) as resp:
        body = await resp.json() if resp.content_type in (PROBLEM, "application/json") else await resp.text()
        return resp.status, resp.headers, body


def _queue_cookie(client: Any, room: str = "r1") -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))[f"sdq_{room}"].value


async def _room_state(redis: redis_asyncio.Redis, keys: RedisKeys, room: str = "r1") -> tuple[int, bytes | None]:
    """(waiting, visitors ever given a number): a new visitor moves the second even when it is
    admitted at once."""
    return await redis.zcard(keys.room_waiting(room)), await redis.hget(keys.room_state(room), "seq")


@HOT
@pytest.mark.parametrize(("forged", "reason"), FORGERIES)
async def test_a_cookieless_cross_site_join_is_refused_and_the_fans_place_and_cookie_stay(
        hot: bool, forged: dict[str, str], reason: str, service_client: Any,
        make_settings: Callable[..., Settings], admin_headers: dict[str, str], redis_client: Any) -> None:
    settings = make_settings(rate_limits_enabled=False, hot_http=hot)
    wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
    keys = RedisKeys(settings.redis_key_prefix)
    await put_room(adm, admin_headers, paused=True)
    fan = await wr.post("/api/rooms/r1/join", json={})
    assert fan.status == 201
    place, cookie = await fan.json(), _queue_cookie(wr)
    before = await _room_state(redis_client, keys)
    passed_before = wr.server.site.passed if hot else 0
    for method, path, kw in (("POST", "/api/rooms/r1/join", {"json": {}}),  # the API, served hot when on
                             ("POST", "/rooms/r1", {"data": {}})):  # the page's no-JavaScript form
        status, headers, body = await _cookieless(wr, method, path, forged, **kw)
        assert status == 403, (path, body)
        assert (body["type"], body["reason"]) == ("/problems/csrf-refused", reason)
        assert "Set-Cookie" not in headers
    if hot:  # the join was refused on the hot path itself: only the form went to aiohttp
        assert wr.server.site.passed == passed_before + 1
    assert await _room_state(redis_client, keys) == before  # no new visitor, no new place
    assert _queue_cookie(wr) == cookie
    status = await wr.get("/api/rooms/r1/status")  # the fan's page, with its cookie
    got = await status.json()
    assert (got["state"], got["position"], got["waiting_total"]) == ("waiting", place["position"], 1)
    metrics = await (await wr.get("/metrics")).text()
    assert f'stagedoor_csrf_rejections_total{{app="waitingroom",reason="{reason}"}} 2.0' in metrics


@HOT
async def test_the_same_join_from_our_pages_an_allowed_origin_or_a_non_browser_passes(
        hot: bool, service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str]) -> None:
    settings = make_settings(rate_limits_enabled=False, hot_http=hot,
                             allowed_origins="https://partner.example, https://tickets.example:8443")
    wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
    await put_room(adm, admin_headers, paused=True)
    own = str(wr.make_url("")).rstrip("/")
    accepted = [
        {},  # curl, a server, a load test: no browser headers at all
        {"Origin": own, "Sec-Fetch-Site": "same-origin"},
        {"Origin": "https://partner.example", "Sec-Fetch-Site": "cross-site"},  # configured: allowed on purpose
        {"Origin": "HTTPS://TICKETS.EXAMPLE:8443", "Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "none"},  # typed in the address bar
    ]
    for position, headers in enumerate(accepted, start=1):
        status, response_headers, body = await _cookieless(wr, "POST", "/api/rooms/r1/join", headers, json={})
        assert (status, body["position"]) == (201, position), headers
        assert "sdq_r1=" in response_headers["Set-Cookie"]  # a first join: the cookie is set
    status, _, body = await _cookieless(wr, "POST", "/api/rooms/r1/join", {"Origin": "https://partner.example.evil"},
                                        json={})
    assert status == 403 and body["type"] == "/problems/csrf-refused"


@pytest.mark.parametrize("value", ["*", "null", "https://a.example/path", "ftp://a.example", "https://u@a.example",
                                   "a.example", "https://a.example:port", "https://*.example"])
async def test_a_bad_allowed_origin_fails_the_start(value: str, make_settings: Callable[..., Settings],
                                                    service_client: Any) -> None:
    from stagedoor.settings import SettingsError
    with pytest.raises(SettingsError, match="STAGEDOOR_ALLOWED_ORIGINS"):
        await service_client("waitingroom", make_settings(allowed_origins=f"https://ok.example,{value}"))


@HOT
async def test_a_join_never_replaces_a_valid_queue_cookie(
        hot: bool, service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str],
        redis_client: Any) -> None:
    settings = make_settings(rate_limits_enabled=False, hot_http=hot)
    wr, adm = await service_client("waitingroom", settings), await service_client("admission", settings)
    keys = RedisKeys(settings.redis_key_prefix)
    own = {"Origin": str(wr.make_url("")).rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    await put_room(adm, admin_headers, paused=True)
    first = await (await wr.post("/api/rooms/r1/join", json={}, headers=own)).json()
    cookie = _queue_cookie(wr)
    other = (await _cookieless(wr, "POST", "/api/rooms/r1/join", {}, json={}))[2]  # another fan, second in line
    before = await _room_state(redis_client, keys)

    again = await wr.post("/api/rooms/r1/join", json={}, headers=own)  # the page joins again (another tab)
    assert again.status == 200 and "Set-Cookie" not in again.headers
    body = await again.json()
    assert (body["visitor_id"], body["position"]) == (first["visitor_id"], 1)

    # a Bearer token beside the cookie answers for its own visitor and leaves the cookie alone
    beside = await wr.post("/api/rooms/r1/join", json={},
                           headers={**own, "Authorization": f"Bearer {other['queue_token']}"})
    assert beside.status == 200 and "Set-Cookie" not in beside.headers
    assert (await beside.json())["visitor_id"] == other["visitor_id"]

    form = await wr.post("/rooms/r1", data={}, headers=own, allow_redirects=False)  # the no-JavaScript form
    assert form.status == 303 and "Set-Cookie" not in form.headers

    assert _queue_cookie(wr) == cookie
    assert await _room_state(redis_client, keys) == before
    status = await (await wr.get("/api/rooms/r1/status")).json()
    assert (status["state"], status["position"]) == ("waiting", 1)

    # the place is gone (dropped as an abandoned tab): the cookie's visitor rejoins at the back
    # under the same id, so the cookie stays what it was
    assert await redis_client.zrem(keys.room_waiting("r1"), first["visitor_id"]) == 1
    rejoined = await wr.post("/api/rooms/r1/join", json={}, headers=own)
    assert rejoined.status == 201 and "Set-Cookie" not in rejoined.headers
    body = await rejoined.json()
    assert (body["visitor_id"], body["position"]) == (first["visitor_id"], 2)
    assert _queue_cookie(wr) == cookie

    # a cookie that does not verify (another secret, another room, garbage) is no place: a new one
    # is made and its cookie set
    stale = mint_queue_token("another-secret-" + "x" * 32, visitor_id=first["visitor_id"], room="r1",
                             now_s=int(time.time()))
    for bad in (stale, "garbage"):
        status_code, headers, fresh = await _cookieless(wr, "POST", "/api/rooms/r1/join",
                                                        {"Cookie": f"sdq_r1={bad}"}, json={})
        assert status_code == 201 and fresh["visitor_id"] != first["visitor_id"]
        parsed: SimpleCookie = SimpleCookie(headers["Set-Cookie"])
        assert parsed["sdq_r1"].value == fresh["queue_token"]


async def test_unsafe_requests_of_the_admission_service_from_another_site_are_refused_and_change_nothing(
        service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str]) -> None:
    # a Bearer token does not exempt a request a browser marks as cross-site: an admin console
    # served elsewhere would need its origin in STAGEDOOR_ALLOWED_ORIGINS
    settings = make_settings(rate_limits_enabled=False)
    adm = await service_client("admission", settings)
    await put_room(adm, admin_headers, paused=True)
    for forged in FORGED_HEADERS:
        headers = {**admin_headers, **forged}
        for method, path, kw in (("PATCH", "/admin/rooms/r1", {"json": {"paused": False, "rate_per_s": 1}}),
                                 ("POST", "/admin/rooms/r1/resume", {}),
                                 ("PUT", "/admin/rooms/r2", {"json": {"opens_at": "2030-01-01T00:00:00Z",
                                                                       "starts_at": "2030-01-01T00:00:00Z",
                                                                       "rate_per_s": 5, "max_active": 10}}),
                                 ("DELETE", "/admin/rooms/r1", {})):
            status, _, body = await _cookieless(adm, method, path, headers, **kw)
            assert status == 403 and body["type"] == "/problems/csrf-refused", (method, path, forged)
    room = await (await adm.get("/admin/rooms/r1", headers=admin_headers)).json()
    assert (room["paused"], room["rate_per_s"]) == (True, 5)
    assert (await adm.get("/admin/rooms/r2", headers=admin_headers)).status == 404
    patched = await adm.patch("/admin/rooms/r1", json={"rate_per_s": 1}, headers=admin_headers)  # no browser
    assert patched.status == 200 and (await patched.json())["rate_per_s"] == 1


async def test_unsafe_requests_of_the_shop_from_another_site_are_refused_and_change_nothing(
        service_client: Any, create_user: Callable[..., Any], make_event: Callable[..., Any], db: Any) -> None:
    shop = await service_client("ticketing")
    event = await make_event(shop)
    organizer = event["_organizer"]
    fan = await create_user()
    email = new_email()
    before = await (await shop.get(f"/api/events/{event['id']}")).json()
    seat_map = await (await shop.get(f"/api/events/{event['id']}/seats")).json()
    two = {"seats": [seat["id"] for seat in seat_map["seats"][:2]]}
    for forged in FORGED_HEADERS:
        for method, path, headers, kw in (
                ("POST", "/api/users", {}, {"json": {"email": email, "password": "a-long-password-1",
                                                     "name": "Fan"}}),
                ("POST", f"/api/events/{event['id']}/holds", fan.headers, {"json": two}),
                ("PATCH", f"/api/events/{event['id']}", organizer.headers, {"json": {"title": "Renamed"}}),
                ("DELETE", f"/api/events/{event['id']}", organizer.headers, {})):
            status, _, body = await _cookieless(shop, method, path, {**headers, **forged}, **kw)
            assert status == 403 and body["type"] == "/problems/csrf-refused", (method, path, forged)
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0
    registered = await shop.post("/api/users", json={"email": email, "password": "a-long-password-1", "name": "Fan"})
    assert registered.status == 201 and await db.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 1
    assert await (await shop.get(f"/api/events/{event['id']}")).json() == before  # title, status, availability
    seats = (await (await shop.get(f"/api/events/{event['id']}/seats")).json())["seats"]
    assert {seat["state"] for seat in seats} == {"free"}
    # the fan's own request (no browser headers, as curl sends it) passes
    held = await shop.post(f"/api/events/{event['id']}/holds", json=two, headers=fan.headers)
    assert held.status == 201, await held.text()


def _sample_path(path: str) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", "demo", path)


@pytest.mark.parametrize("service", sorted(COMPONENTS))
async def test_every_unsafe_route_of_every_service_refuses_a_cross_site_request_before_its_handler(
        service: str, service_client: Any, make_settings: Callable[..., Settings]) -> None:
    # whatever the route wants (a body, a token, a room that exists), the guard answers first
    client = await service_client(service, make_settings(rate_limits_enabled=False))
    checked = []
    for route in client.server.app.router.routes():
        if route.method not in ("POST", "PUT", "PATCH", "DELETE") or route.resource is None:
            continue
        info = route.resource.get_info()
        path = _sample_path(info.get("path") or info.get("formatter") or "")
        for forged in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
            status, headers, body = await _cookieless(client, route.method, path, forged, data=b"{}")
            assert status == 403 and body["type"] == "/problems/csrf-refused", (route.method, path, forged, body)
            assert "Set-Cookie" not in headers
        checked.append(f"{route.method} {path}")
    if service != "worker":
        assert checked, "no unsafe route found"
