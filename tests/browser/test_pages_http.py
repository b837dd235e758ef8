"""The pages without a browser: server rendering, escaping, filters, pagination, static files,
CSP-compatible markup (no inline script), and the organizer room proxy's input checks."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stagedoor.settings import TEMPLATES_DIR


def event_body(title: str, city: str = "Lyon", price: int = 5000, category: str = "concert",
               seated: bool = False) -> dict[str, Any]:
    starts = datetime.now(UTC) + timedelta(days=10)
    body: dict[str, Any] = {
        "title": title, "category": category, "venue": {"name": "Hall", "city": city},
        "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=2)).isoformat(), "currency": "EUR",
        "tiers": [{"code": "ga", "name": "Standing", "price": price, "quantity": 100}],
    }
    if seated:
        body["tiers"] = [{"code": "a", "name": "A", "price": price}]
        body["seat_map"] = {"sections": [{"name": "S", "rows": [{"label": "1", "seats": [
            {"number": str(n), "tier": "a"} for n in range(1, 4)]}]}]}
    return body


async def test_event_list_filters_paginates_and_escapes(service_client: Any, create_user: Any) -> None:
    client = await service_client("ticketing")
    organizer = await create_user(roles=["organizer"])
    for i in range(14):
        res = await client.post("/api/events", json=event_body(f"Show {i:02d}", city="Lyon" if i % 2 else "Paris"),
                                headers=organizer.headers)
        assert res.status == 201, await res.text()
    res = await client.post("/api/events", json=event_body("<script>alert(1)</script>", city="Nice"),
                            headers=organizer.headers)
    assert res.status == 201

    page = await client.get("/")
    html = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    nice = await (await client.get("/?city=Nice")).text()
    assert "<script>alert(1)</script>" not in nice and "&lt;script&gt;alert(1)&lt;/script&gt;" in nice
    assert html.count('class="card"') == 12
    next_link = re.search(r'href="(/\?[^"]*cursor=[^"]+)"', html)
    assert next_link is not None
    second = await (await client.get(next_link.group(1).replace("&amp;", "&"))).text()
    assert second.count('class="card"') == 3 and "&lt;script&gt;" in second

    lyon = await (await client.get("/?city=Lyon&q=&category=&from=&to=&min_price=&max_price=")).text()
    assert lyon.count('class="card"') == 7 and "Paris" not in lyon.split("</form>")[1]
    for query, says in (("from=not-a-date", "From date must be a date"), ("min_price=1e308", "Min price must be a"),
                        ("max_price=nan", "Max price must be a number"), ("min_price=abc", "Min price must be a"),
                        ("min_price=-5", "Min price"), ("cursor=forged", "Please check the filters")):
        bad = await client.get(f"/?{query}")
        text = await bad.text()
        assert bad.status == 200 and "Please check the filters" in text and says in text, (query, text[-900:])


async def test_event_page_draws_the_seat_map_with_text_alternatives(service_client: Any, create_user: Any) -> None:
    client = await service_client("ticketing")
    organizer = await create_user(roles=["organizer"])
    res = await client.post("/api/events", json=event_body("Seated", seated=True), headers=organizer.headers)
    event = await res.json()
    html = await (await client.get(f"/events/{event['id']}")).text()
    assert html.count('role="checkbox"') == 3
    assert 'aria-label="S, row 1, seat 2, a, free"' in html
    assert "<script>" not in html.replace('<script type="application/json" id="sd-strings">', "")
    for path in ("/events/999999", "/events/abc"):
        res = await client.get(path)
        assert res.status == 404 and res.content_type == "text/html"
        assert "Page not found" in await res.text()


async def test_pages_carry_no_inline_script_and_static_files_are_served(service_client: Any) -> None:
    client = await service_client("ticketing")
    for path in ("/", "/signin", "/signup", "/me/orders", "/checkout/h1", "/orders/o1", "/organizer",
                 "/organizer/checkin"):
        res = await client.get(path)
        assert res.status == 200, path
        assert "script-src 'self'" in res.headers["Content-Security-Policy"]
        html = await res.text()
        for tag in re.findall(r"<script[^>]*>", html):
            assert 'src="/static/' in tag or 'type="application/json"' in tag, (path, tag)
        assert not re.search(r"<[^>]+\son[a-z]+=", html), path  # no inline event handlers
    for name in ("shop.js", "organizer.js", "console.js", "site.css"):
        res = await client.get(f"/static/{name}")
        assert res.status == 200, name
        assert (await res.read()) == (TEMPLATES_DIR / "static" / name).read_bytes()


async def test_pages_link_static_files_by_version_and_only_that_version_is_cached_for_good(
        service_client: Any) -> None:
    """A page names each static file with its content's version; that URL may be kept for good
    (no revalidation per page load at an on-sale's peak), any other asks again."""
    client = await service_client("ticketing")
    html = await (await client.get("/")).text()
    linked = dict(re.findall(r'"/static/([a-z]+\.(?:js|css))\?v=([0-9a-f]{12})"', html))
    assert set(linked) == {"shop.js", "site.css"}, html[:600]
    for name, version in linked.items():
        content = (TEMPLATES_DIR / "static" / name).read_bytes()
        assert version == hashlib.sha256(content).hexdigest()[:12]
        current = await client.get(f"/static/{name}?v={version}")
        assert current.status == 200 and await current.read() == content
        assert current.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        again = await client.get(f"/static/{name}?v={version}", headers={"If-None-Match": current.headers["ETag"]})
        assert again.status == 304
        for other in (f"/static/{name}", f"/static/{name}?v=000000000000"):
            res = await client.get(other)
            assert res.status == 200 and await res.read() == content, other
            assert res.headers["Cache-Control"] == "no-cache", other
    assert (await client.get("/static/nope.js?v=1")).status == 404


def test_a_static_files_version_follows_its_content_and_unknown_names_fail_the_render(tmp_path: Path) -> None:
    from stagedoor.static_files import StaticFiles

    (tmp_path / "app.js").write_text("one")
    files = StaticFiles(tmp_path)
    first = files.url("app.js")
    assert first == f"/static/app.js?v={hashlib.sha256(b'one').hexdigest()[:12]}"
    assert files.url("app.js") == first
    (tmp_path / "app.js").write_text("two!")  # edited under a running dev stack: a new URL
    assert files.url("app.js") == f"/static/app.js?v={hashlib.sha256(b'two!').hexdigest()[:12]}"
    assert files.cache_control("app.js", hashlib.sha256(b"two!").hexdigest()[:12]).endswith("immutable")
    assert files.cache_control("app.js", first.rsplit("=", 1)[1]) == "no-cache"
    with pytest.raises(LookupError):
        files.url("missing.js")


async def test_room_proxy_refuses_bad_room_ids_and_methods(service_client: Any) -> None:
    client = await service_client("ticketing")
    assert (await client.get("/organizer/api/rooms/..%2Fetc")).status == 404
    assert (await client.get("/organizer/api/rooms/UPPER")).status == 404
    assert (await client.delete("/organizer/api/rooms/fine")).status == 405


async def test_general_admission_event_offers_a_quantity_picker(service_client: Any, create_user: Any) -> None:
    client = await service_client("ticketing")
    organizer = await create_user(roles=["organizer"])
    res = await client.post("/api/events", json=event_body("Standing Only"), headers=organizer.headers)
    event = await res.json()
    html = await (await client.get(f"/events/{event['id']}")).text()
    assert 'data-ga-tier="ga"' in html and 'max="10"' in html  # the per-order limit bounds the picker
    assert 'id="seatmap"' not in html


async def test_console_token_proxy_passes_only_the_password_and_refresh_grants(start_stack: Any) -> None:
    stack = await start_stack(run_controller=False)
    url = f"{stack.admission}/console/api/token"
    async with stack.http.post(url, data={"grant_type": "client_credentials"}) as res:
        assert res.status == 400 and (await res.json())["error"] == "unsupported_grant_type"
    async with stack.http.post(url, json={"grant_type": "password"}) as res:
        assert res.status == 400 and (await res.json())["error"] == "invalid_request"
    async with stack.http.post(url, data={"grant_type": "password", "username": "nobody@example.test",
                                          "password": "not-the-password-1"}) as res:
        assert res.status == 400 and (await res.json())["error"] == "invalid_grant"  # ticketing's answer
        assert res.headers["Cache-Control"] == "no-store"
    await stack.call("POST", f"{stack.shop}/api/users", expect=201, json={
        "email": "console-proxy@example.test", "password": "violet-otter-harbour-42", "name": "Proxy"})
    async with stack.http.post(url, data={"grant_type": "password", "username": "console-proxy@example.test",
                                          "password": "violet-otter-harbour-42"}) as res:
        tokens = await res.json()
        assert res.status == 200 and tokens["token_type"].lower() == "bearer" and tokens["refresh_token"]
    async with stack.http.post(url, data={"grant_type": "refresh_token",
                                          "refresh_token": tokens["refresh_token"]}) as res:
        assert res.status == 200 and (await res.json())["refresh_token"] != tokens["refresh_token"]
