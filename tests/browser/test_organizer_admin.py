"""Organizer and admin pages in a real browser, and the queue page
advancing with JavaScript disabled."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.browser import signed_in_script
from tests.support.settings import ADMIN_KEY

expect = pytest.importorskip("playwright.async_api", reason="browser tests need playwright").expect


async def test_organizer_builds_a_seat_map_and_opens_the_room(start_stack: Any, create_user: Any, browser: Any,
                                                              shot: Any) -> None:
    stack = await start_stack()
    organizer = await create_user(roles=["organizer"])
    context = await browser.new_context(viewport={"width": 1200, "height": 1000})
    await context.add_init_script(signed_in_script(organizer.token, {
        "id": organizer.id, "name": "Olga Organizer", "email": organizer.email, "roles": ["organizer"]}))
    page = await context.new_page()
    # The start page lists the organizer's events (none yet) and leads to the builder.
    await page.goto(f"{stack.shop}/organizer")
    await expect(page.locator("#my-events-body")).to_contain_text("No events yet")
    await page.get_by_role("link", name="Create an event").click()
    await expect(page).to_have_url(f"{stack.shop}/organizer/new")
    await page.get_by_label("Title").fill("Builder Gala")
    await page.get_by_label("Venue").fill("Opera")
    await page.get_by_label("City").fill("Nantes")
    # Sections x rows x seats: the default "Stalls" 4 x 10 in tier front, plus a balcony 2 x 8 in tier back.
    await page.get_by_role("button", name="Add section").click()
    await page.get_by_label("Section 2").fill("Balcony")
    await page.get_by_label("Rows 2").fill("2")
    await page.get_by_label("Seats per row 2").fill("8")
    await page.get_by_label("Tier code 2").fill("back")
    await expect(page.locator("#preview-summary")).to_contain_text("= 56")
    await expect(page.locator("#preview rect")).to_have_count(56)
    await shot(page, "builder")
    await page.get_by_role("button", name="Create event").click()
    await expect(page.locator("#messages")).to_contain_text("Event created")
    event_id = re.search(r"#(\d+)", await page.locator("#messages").text_content() or "").group(1)  # type: ignore[union-attr]

    seats = await stack.call("GET", f"{stack.shop}/api/events/{event_id}/seats")
    assert len(seats["seats"]) == 56
    assert {s["section"] for s in seats["seats"]} == {"Stalls", "Balcony"}

    await page.get_by_label("Room id").fill("gala")
    await page.get_by_label("Admission rate (visitors per second)").fill("25")
    await page.get_by_role("button", name="Save and open the room").click()
    await expect(page.locator("#room-done")).to_be_visible()
    await shot(page, "room-opened")
    room = await stack.call("GET", f"{stack.admission}/admin/rooms/gala", headers=stack.admin_headers)
    assert room["event_id"] == event_id and room["rate_per_s"] == 25
    assert room["shop_url"] == f"{stack.shop}/events/{event_id}"
    assert room["title"] == "Builder Gala"  # the queue page names the sale

    # The room link leads to the queue page; the dashboard shows live sales and the room's stats.
    await page.locator("#room-link").click()
    await expect(page.get_by_role("heading", name="Waiting room")).to_be_visible()
    await expect(page.locator("#event-name")).to_have_text("Builder Gala")
    await page.goto(f"{stack.shop}/organizer/events/{event_id}")
    await expect(page.locator("#st-free")).to_have_text("56")
    await expect(page.locator("#st-queue")).to_have_text("0")
    await expect(page.get_by_label("Admission rate (visitors per second)")).to_have_value("25")
    await shot(page, "dashboard")

    # Edit the event and the room's admission settings from the dashboard.
    await page.get_by_label("Title").fill("Builder Gala (late show)")
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.locator("#event-title")).to_have_text("Builder Gala (late show)")
    await page.get_by_label("Admission rate (visitors per second)").fill("40")
    await page.get_by_label("Max active shoppers").fill("120")
    await page.get_by_role("button", name="Save the waiting room").click()
    await expect(page.locator("#messages")).to_contain_text("Waiting room settings saved")
    room = await stack.call("GET", f"{stack.admission}/admin/rooms/gala", headers=stack.admin_headers)
    assert (room["rate_per_s"], room["max_active"], room["event_id"]) == (40, 120, event_id)
    assert room["title"] == "Builder Gala (late show)"
    event = await stack.call("GET", f"{stack.shop}/api/events/{event_id}")
    assert event["title"] == "Builder Gala (late show)"

    # The start page now lists it: status, sold / free, the room; the title leads to the dashboard.
    await page.goto(f"{stack.shop}/organizer")
    listed = page.locator("#my-events-body tr", has_text="Builder Gala (late show)")
    await expect(listed).to_contain_text("On sale")
    await expect(listed.locator("td.num").nth(1)).to_have_text("56")
    room_link = listed.get_by_role("link", name="gala", exact=True)
    await expect(room_link).to_have_attribute("href", f"{stack.queue}/rooms/gala")
    await shot(page, "organizer-events")
    await listed.get_by_role("link", name="Builder Gala (late show)").click()
    await expect(page).to_have_url(f"{stack.shop}/organizer/events/{event_id}")

    # The shop is now gated: the event page asks a fan to go through the queue.
    fan = await browser.new_page()
    await fan.goto(f"{stack.shop}/events/{event_id}")
    await expect(fan.locator("#queue-needed")).to_be_visible()


async def _slow_room(stack: Any, create_user: Any, room: str, title: str) -> None:
    """An organizer's event gated by ``room``, admitting one fan per 100 s (a page stays in
    line) and patient with silent visitors."""
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title=title)
    await stack.put_room(room, event_id=event["id"], rate_per_s=0.01, abandon_after_s=600,
                         shop_url=f"{stack.shop}/events/{event['id']}")


async def test_admin_changes_the_rate_and_the_queue_eta_follows(start_stack: Any, create_user: Any, browser: Any,
                                                                shot: Any) -> None:
    # No admission ticks: the ETA is position / configured rate, so the change is what moves it.
    stack = await start_stack(run_controller=False)
    await _slow_room(stack, create_user, "rate-room", "Rate Night")
    for _ in range(2):
        await stack.call("POST", f"{stack.queue}/api/rooms/rate-room/join", json={})

    fan_context = await browser.new_context(java_script_enabled=False)  # the queue page refreshes by itself
    fan = await fan_context.new_page()
    await fan.goto(f"{stack.queue}/rooms/rate-room")
    await fan.get_by_role("button", name="Join the queue").click()
    await expect(fan.locator("#position")).to_have_text("3")
    before = int(await fan.locator("#eta").text_content() or "0")
    assert before >= 250, before  # 3 people at 0.01/s
    await shot(fan, "queue-slow")

    admin = await (await browser.new_context(viewport={"width": 1200, "height": 800})).new_page()
    await admin.goto(f"{stack.admission}/console")
    await admin.get_by_text("SREs: connect with the admin API key").click()  # the key option is folded
    await admin.get_by_label("Admin API key or admin access token").fill(ADMIN_KEY)
    await admin.get_by_role("button", name="Connect").click()
    row = admin.locator('tr[data-room="rate-room"]')
    await expect(row.locator(".r-waiting")).to_have_text("3")
    await row.get_by_label("Rate /s rate-room").fill("3")
    await row.get_by_role("button", name="Apply rate-room").click()
    await expect(admin.locator("#messages")).to_contain_text("Saved")
    await shot(admin, "console-rate-changed")
    room = await stack.call("GET", f"{stack.admission}/admin/rooms/rate-room", headers=stack.admin_headers)
    assert room["rate_per_s"] == 3

    # The queue page (no JavaScript) picks the new rate up at its next refresh.
    deadline = time.monotonic() + 20
    while True:
        eta = await fan.locator("#eta").text_content()
        if eta is not None and int(eta) <= 5:
            break
        assert time.monotonic() < deadline, f"ETA still {eta}"
        await asyncio.sleep(0.5)
    await shot(fan, "queue-fast")

    # Pause from the console: the queue page says so.
    await row.get_by_role("button", name="Pause rate-room").click()
    await expect(row.locator(".r-state")).to_contain_text("paused")
    await expect(fan.get_by_text("admission is paused")).to_be_visible(timeout=15000)
    await shot(fan, "queue-paused")

    # Users: find one by email prefix, make them an organizer.
    user = await create_user(roles=["customer"], email="promote-me@example.test")
    await admin.get_by_label("Email starts with").fill("promote-me")
    await admin.get_by_role("button", name="Search").click()
    roles = admin.get_by_label("Roles (comma separated) promote-me@example.test")
    await roles.fill("customer, organizer")
    await admin.get_by_role("button", name="Update user promote-me@example.test").click()
    await expect(admin.locator("#messages")).to_contain_text(re.compile(r"Saved.*promote-me@example.test"))
    await shot(admin, "console-user-promoted")
    fetched = await stack.call("GET", f"{stack.shop}/api/users/{user.id}", headers=stack.admin_headers)
    assert sorted(fetched["roles"]) == ["customer", "organizer"]


async def test_queue_page_advances_to_the_shop_without_javascript(start_stack: Any, create_user: Any, browser: Any,
                                                                  shot: Any) -> None:
    stack = await start_stack()
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="No Script Night")
    await stack.put_room("nojs-room", event_id=event["id"], rate_per_s=1, abandon_after_s=120,
                         shop_url=f"{stack.shop}/events/{event['id']}")
    other = await stack.call("POST", f"{stack.queue}/api/rooms/nojs-room/join", json={})
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(f"{stack.queue}/rooms/nojs-room")
    await page.get_by_role("button", name="Join the queue").click()
    await shot(page, "nojs-joined")
    deadline = time.monotonic() + 30
    while "/events/" not in page.url:
        assert time.monotonic() < deadline, "the page never moved on"
        await stack.call("GET", f"{stack.queue}/api/rooms/nojs-room/status",
                         headers={"Authorization": f"Bearer {other['queue_token']}"})
        await asyncio.sleep(0.5)
    await page.wait_for_load_state()
    await expect(page.get_by_role("heading", name="No Script Night")).to_be_visible()
    await shot(page, "nojs-shop")


async def test_queue_page_with_javascript_updates_live_and_is_not_reloaded(start_stack: Any, create_user: Any,
                                                                          browser: Any, shot: Any) -> None:
    """The timed meta refresh is only for pages without JavaScript (<noscript>): with the script
    the position moves over SSE and the page is never reloaded under the visitor."""
    stack = await start_stack(run_controller=False)  # nobody is admitted: the page stays "waiting"
    await _slow_room(stack, create_user, "live-room", "Live Night")
    ahead = [await stack.call("POST", f"{stack.queue}/api/rooms/live-room/join", json={}) for _ in range(2)]
    page = await (await browser.new_context(viewport={"width": 390, "height": 844})).new_page()
    await page.goto(f"{stack.queue}/rooms/live-room")
    await page.get_by_role("button", name="Join the queue").click()
    await expect(page.locator("#position")).to_have_text("3")
    assert "<noscript><meta http-equiv=\"refresh\"" in await page.content()
    await page.evaluate("window.__sameDocument = true")
    await stack.call("DELETE", f"{stack.admission}/admin/rooms/live-room/visitors/"
                     f"{ahead[0]['visitor_id']}", headers=stack.admin_headers, expect=204)
    await expect(page.locator("#position")).to_have_text("2", timeout=15000)
    await asyncio.sleep(6)  # longer than the no-JS refresh period (5 s)
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    await shot(page, "queue-live-phone")


async def test_queue_page_script_solves_proof_of_work_and_hands_over_to_the_shop(
        start_stack: Any, create_user: Any, browser: Any, shot: Any) -> None:
    stack = await start_stack()
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="Proof Night")
    await stack.put_room("pow-room", event_id=event["id"], rate_per_s=5, pow_difficulty=8,
                         shop_url=f"{stack.shop}/events/{event['id']}")
    page = await browser.new_page()
    await page.goto(f"{stack.queue}/rooms/pow-room")
    async with stack.http.get(f"{stack.queue}/static/queue.js") as res:
        served = res.status == 200
    if not served or 'src="/static/queue.js' not in await page.content():
        pytest.skip("the waiting room does not serve /static/queue.js from templates/queue.html yet (wiring)")
    await page.get_by_role("button", name="Join the queue").click()
    await page.wait_for_url(re.compile(r"/events/"), timeout=30000)
    await expect(page.locator("#admission-banner")).to_be_visible()
    assert "admission_token" not in page.url
    await shot(page, "pow-admitted")


def _record_traffic(page: Any) -> tuple[list[str], list[str]]:
    """(method + path of every request the page makes, its console errors), filled as it runs."""
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda req: requests.append(f"{req.method} {re.sub(r'^https?://[^/]+', '', req.url)}"))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return requests, errors


async def test_queue_page_joins_a_room_without_proof_of_work_in_one_request(start_stack: Any, create_user: Any,
                                                                           browser: Any, shot: Any) -> None:
    """No challenge is fetched where none is needed (at an on-sale's peak that was a second
    request per fan, answered 403), no icon is fetched, and the console stays clean."""
    stack = await start_stack(run_controller=False)
    await _slow_room(stack, create_user, "plain-room", "Plain Night")
    await stack.call("POST", f"{stack.queue}/api/rooms/plain-room/join", json={})  # someone ahead: we wait
    page = await browser.new_page()
    requests, errors = _record_traffic(page)
    await page.goto(f"{stack.queue}/rooms/plain-room")
    await page.get_by_role("button", name="Join the queue").click()
    await expect(page.locator("#position")).to_have_text("2")
    await shot(page, "plain-joined")
    assert [r for r in requests if "/api/rooms/plain-room/" in r and "/events" not in r] == [
        "POST /api/rooms/plain-room/join"], requests
    assert not any("favicon" in r for r in requests), requests
    assert requests.count("GET /rooms/plain-room") == 1, requests  # the joined state is shown in place
    assert errors == [], errors


async def test_queue_page_solves_proof_of_work_when_the_room_starts_requiring_it(
        start_stack: Any, create_user: Any, browser: Any, shot: Any) -> None:
    """The page was rendered before the room required proof of work: its first join is refused
    with pow-required, and the page then fetches a challenge, solves it and joins."""
    stack = await start_stack()
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="Late Proof Night")
    await stack.put_room("late-pow", event_id=event["id"], rate_per_s=5,
                         shop_url=f"{stack.shop}/events/{event['id']}")
    page = await browser.new_page()
    requests, _ = _record_traffic(page)
    await page.goto(f"{stack.queue}/rooms/late-pow")
    assert await page.locator("body").get_attribute("data-pow") == "0"
    await stack.call("PATCH", f"{stack.admission}/admin/rooms/late-pow", json={"pow_difficulty": 8},
                     headers=stack.admin_headers)
    deadline = time.monotonic() + 10
    while True:  # the waiting room reads a changed config within a second
        refused = await stack.call("POST", f"{stack.queue}/api/rooms/late-pow/join", json={}, expect=(201, 403))
        if refused and refused.get("type") == "/problems/pow-required":
            break
        assert time.monotonic() < deadline, "the room never started to require proof of work"
        await asyncio.sleep(0.2)
    await page.get_by_role("button", name="Join the queue").click()
    await page.wait_for_url(re.compile(r"/events/"), timeout=30000)
    ours = [r for r in requests if "/api/rooms/late-pow/" in r and "/events" not in r]
    assert ours[:3] == ["POST /api/rooms/late-pow/join", "GET /api/rooms/late-pow/pow",
                        "POST /api/rooms/late-pow/join"], ours
    await shot(page, "late-pow-admitted")


async def test_queue_page_says_to_keep_it_open_while_the_queue_is_out_of_reach(
        start_stack: Any, create_user: Any, browser: Any, shot: Any) -> None:
    """While the queue answers 503 (Redis down) the page keeps polling, which is what keeps the
    fan's place (their heartbeat); after two failed polls it says so, and the note goes with the
    next answer."""
    stack = await start_stack(run_controller=False)
    await _slow_room(stack, create_user, "outage", "Outage Night")
    await stack.call("POST", f"{stack.queue}/api/rooms/outage/join", json={})  # someone ahead: we wait
    page = await browser.new_page()
    await page.route("**/api/rooms/outage/events", lambda route: route.abort())  # no stream: the page polls
    await page.goto(f"{stack.queue}/rooms/outage")
    await page.get_by_role("button", name="Join the queue").click()
    await expect(page.locator("#position")).to_have_text("2")
    await expect(page.locator("#trouble-note")).to_be_hidden()
    problem = ('{"type": "/problems/redis-unavailable", "title": "Redis is unavailable", "status": 503, '
               '"detail": "Redis is unreachable; try again in a moment", "reason": "unreachable"}')

    async def unavailable(route: Any) -> None:
        await route.fulfill(status=503, body=problem, headers={"Content-Type": "application/problem+json",
                                                               "Retry-After": "2"})

    await page.route("**/api/rooms/outage/status", unavailable)
    await expect(page.locator("#trouble-note")).to_be_visible(timeout=10000)
    await expect(page.locator("#trouble-note")).to_contain_text("We can't reach the queue at the moment")
    await shot(page, "outage-trouble")
    await page.unroute("**/api/rooms/outage/status", unavailable)
    await expect(page.locator("#trouble-note")).to_be_hidden(timeout=6000)
    await expect(page.locator("#position")).to_have_text("2")


async def test_queue_page_moves_through_the_sale_without_reloading(start_stack: Any, create_user: Any, browser: Any,
                                                                   shot: Any) -> None:
    """Pre-queue, the start, a pause and its end, sold out: all shown in place. A reload per
    change would come from every open page in the same second, when the waiting room is busiest."""
    stack = await start_stack(run_controller=False)  # nobody is admitted: the page stays in line
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="In Place Night")
    starts_at = datetime.now(UTC) + timedelta(seconds=4)
    await stack.put_room("inplace", event_id=event["id"], starts_at=starts_at.isoformat(), rate_per_s=1,
                         abandon_after_s=600, shop_url=f"{stack.shop}/events/{event['id']}")
    page = await browser.new_page()
    requests, errors = _record_traffic(page)
    await page.goto(f"{stack.queue}/rooms/inplace")
    await page.evaluate("window.__sameDocument = true")
    await page.get_by_role("button", name="Join the queue").click()
    await expect(page.get_by_text("You're in. The sale starts in")).to_be_visible()
    await shot(page, "inplace-pre-queue")
    await expect(page.locator("#position")).to_have_text("1", timeout=10000)  # the start, no reload
    await expect(page.locator("#eta-note")).to_be_visible()
    await stack.call("PATCH", f"{stack.admission}/admin/rooms/inplace", json={"paused": True},
                     headers=stack.admin_headers)
    await expect(page.locator("#paused-note")).to_be_visible(timeout=5000)
    await expect(page.locator("#eta-note")).to_be_hidden()
    await shot(page, "inplace-paused")
    await stack.call("PATCH", f"{stack.admission}/admin/rooms/inplace", json={"paused": False},
                     headers=stack.admin_headers)
    await expect(page.locator("#paused-note")).to_be_hidden(timeout=5000)
    await stack.call("PATCH", f"{stack.admission}/admin/rooms/inplace", json={"sold_out": True},
                     headers=stack.admin_headers)
    await expect(page.get_by_text("Sorry, every ticket has been sold.")).to_be_visible(timeout=5000)
    # where tickets that come back go: the event's waiting list, in the shop
    await expect(page.locator("#waitlist-link")).to_have_attribute("href", f"{stack.shop}/events/{event['id']}")
    await shot(page, "inplace-sold-out")
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert requests.count("GET /rooms/inplace") == 1, requests
    assert errors == [], errors


async def test_admin_signs_in_to_the_console_with_email_and_password(start_stack: Any, create_user: Any,
                                                                      browser: Any, shot: Any) -> None:
    """The console's email + password sign-in (OAuth2 password grant through the console's proxy):
    a non-admin is turned away, an admin sees rooms, users and the events report, and the access
    token is refreshed before it expires."""
    stack = await start_stack(run_controller=False)
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="Report Night")
    await stack.put_room("report-room", event_id=event["id"], shop_url=f"{stack.shop}/events/{event['id']}")
    password = "violet-otter-harbour-42"
    users = {}
    for who in ("ops", "fan"):
        users[who] = await stack.call("POST", f"{stack.shop}/api/users", expect=201, json={
            "email": f"{who}-{int(time.time() * 1000)}@example.test", "password": password, "name": who.title()})
    await stack.call("PATCH", f"{stack.shop}/api/users/{users['ops']['id']}", headers=stack.admin_headers,
                     json={"roles": ["customer", "admin"]})

    admin = await (await browser.new_context(viewport={"width": 1200, "height": 900})).new_page()
    await admin.goto(f"{stack.admission}/console")
    await shot(admin, "console-signin")
    await admin.get_by_label("Email", exact=True).fill(users["fan"]["email"])
    await admin.get_by_label("Password", exact=True).fill(password)
    await admin.get_by_role("button", name="Sign in").click()
    await expect(admin.locator("#messages")).to_contain_text("not an admin")
    await admin.get_by_label("Password", exact=True).fill("wrong-password-123")
    await admin.get_by_role("button", name="Sign in").click()
    await expect(admin.locator("#messages")).to_contain_text("Email or password is wrong")
    await expect(admin.locator("#console")).to_be_hidden()

    await admin.get_by_label("Email", exact=True).fill(users["ops"]["email"])
    await admin.get_by_label("Password", exact=True).fill(password)
    await admin.get_by_role("button", name="Sign in").click()
    await expect(admin.locator('tr[data-room="report-room"]')).to_be_visible()
    report = admin.locator("#events tbody tr", has_text="Report Night")
    await expect(report).to_contain_text("On sale")
    await expect(admin.locator("#events-total")).to_contain_text("tickets sold")
    await expect(admin.locator("#users tbody tr", has_text=users["fan"]["email"])).to_be_visible()
    await shot(admin, "console-signed-in")

    # The access token lives minutes: shortly before it expires the console refreshes it.
    first = await admin.evaluate("sessionStorage.getItem('sd_admin_key')")
    await admin.evaluate("sessionStorage.setItem('sd_admin_expires', String(Date.now()))")
    for _ in range(100):  # the next poll of the rooms (every 2 s) refreshes first
        if await admin.evaluate("sessionStorage.getItem('sd_admin_key')") != first:
            break
        await asyncio.sleep(0.1)
    assert await admin.evaluate("sessionStorage.getItem('sd_admin_key')") != first
    await admin.get_by_role("button", name="Pause report-room").click()
    await expect(admin.locator('tr[data-room="report-room"] .r-state')).to_contain_text("paused")


async def test_admin_switches_a_room_to_the_automatic_rate_in_the_console(start_stack: Any, create_user: Any,
                                                                          browser: Any, shot: Any) -> None:
    stack = await start_stack(run_controller=False)
    await _slow_room(stack, create_user, "auto-room", "Auto Night")
    admin = await (await browser.new_context(viewport={"width": 1400, "height": 800})).new_page()
    await admin.goto(f"{stack.admission}/console")
    await admin.get_by_text("SREs: connect with the admin API key").click()
    await admin.get_by_label("Admin API key or admin access token").fill(ADMIN_KEY)
    await admin.get_by_role("button", name="Connect").click()
    row = admin.locator('tr[data-room="auto-room"]')
    await expect(row.locator(".r-rate-now")).to_have_text("now 0.01 /s")
    # bounds that leave the starting rate outside them: refused, the problem shown, nothing changed
    await row.get_by_label("Automatic rate auto-room").select_option("auto")
    await row.get_by_label("min /s auto-room").fill("1")
    await row.get_by_label("max /s auto-room").fill("40")
    await row.get_by_role("button", name="Apply auto-room").click()
    await expect(admin.locator("#messages")).to_contain_text("between rate_min_per_s and rate_max_per_s")
    room = await stack.call("GET", f"{stack.admission}/admin/rooms/auto-room", headers=stack.admin_headers)
    assert (room["rate_mode"], room["rate_min_per_s"]) == ("fixed", None)
    row = admin.locator('tr[data-room="auto-room"]')
    await row.get_by_label("Automatic rate auto-room").select_option("auto")
    await row.get_by_label("Rate /s auto-room").fill("5")
    await row.get_by_label("min /s auto-room").fill("1")
    await row.get_by_label("max /s auto-room").fill("40")
    await row.get_by_role("button", name="Apply auto-room").click()
    await expect(admin.locator("#messages")).to_contain_text("Saved")
    await expect(admin.locator('tr[data-room="auto-room"] .r-rate-now')).to_have_text("now 5.00 /s")
    await shot(admin, "console-auto-rate")
    room = await stack.call("GET", f"{stack.admission}/admin/rooms/auto-room", headers=stack.admin_headers)
    assert (room["rate_mode"], room["rate_min_per_s"], room["rate_max_per_s"], room["rate_current_per_s"]) == (
        "auto", 1.0, 40.0, 5.0)
