"""The pages without a browser: server rendering, escaping, filters, pagination, static files,
CSP-compatible markup (no inline script), and the organizer room proxy's input checks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

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
