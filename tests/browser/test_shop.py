"""Fan journey and seat race in a real browser."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.browser import signed_in_script

playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests need playwright")
expect = playwright_api.expect
PlaywrightError = playwright_api.Error

PASSWORD = "correct horse battery staple"


async def test_fan_goes_from_the_queue_page_to_a_qr_ticket(start_stack: Any, create_user: Any, browser: Any,
                                                          shot: Any) -> None:
    stack = await start_stack(worker=True)  # the worker counts the sales the dashboard shows
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers)
    event_id = event["id"]
    starts_at = datetime.now(UTC) + timedelta(seconds=4)
    await stack.put_room("fan-room", event_id=event_id, starts_at=starts_at.isoformat(), rate_per_s=0.3,
                         max_active=100, abandon_after_s=120, shop_url=f"{stack.shop}/events/{event_id}")
    # Two visitors already queued (they keep polling so they are not skipped as abandoned).
    others = [await stack.call("POST", f"{stack.queue}/api/rooms/fan-room/join", json={}) for _ in range(2)]

    page = await (await browser.new_context(viewport={"width": 1100, "height": 900})).new_page()
    await page.goto(f"{stack.queue}/rooms/fan-room")
    await expect(page.get_by_text("The sale starts in")).to_be_visible()
    await shot(page, "countdown")
    # Join after the start, so the pre-queue shuffle cannot put us first: we wait behind the others.
    await asyncio.sleep(max(0.0, (starts_at - datetime.now(UTC)).total_seconds()) + 0.2)
    await page.reload()
    await page.get_by_role("button", name="Join the queue").click()
    await expect(page.locator("body")).to_contain_text(re.compile("Your place in line|your turn"))
    await shot(page, "joined")

    seen_positions: list[str] = []
    deadline = time.monotonic() + 60
    while "/events/" not in page.url:
        assert time.monotonic() < deadline, "never admitted"
        for other in others:  # the other visitors stay alive
            await stack.call("GET", f"{stack.queue}/api/rooms/fan-room/status",
                             headers={"Authorization": f"Bearer {other['queue_token']}"})
        try:  # the page refreshes itself (and finally redirects) under our feet
            text = await page.evaluate("(document.getElementById('position') || {}).textContent || ''")
        except PlaywrightError:
            text = ""
        text = text.strip()
        if text and (not seen_positions or seen_positions[-1] != text):
            seen_positions.append(text)
            with contextlib.suppress(PlaywrightError):
                await shot(page, f"position-{text}")
        await asyncio.sleep(0.5)

    assert seen_positions, "the queue page never showed a position"
    numbers = [int(p) for p in seen_positions]
    assert numbers == sorted(numbers, reverse=True), numbers  # a place only ever moves forward

    # In the shop: the admission token was taken from the fragment and removed from the address bar.
    await page.wait_for_load_state()
    await expect(page.locator("#admission-banner")).to_be_visible()
    assert "admission_token" not in page.url
    await shot(page, "shop-admitted")

    # Not signed in: holding sends the fan to sign in, who creates an account and comes back.
    await page.locator('.seat[data-label="S1, row A, seat 3"]').click()
    await page.get_by_role("button", name="Hold these tickets").click()
    await page.wait_for_url(re.compile(r"/signin\?next="))
    await page.locator("#main").get_by_role("link", name="Sign up").click()
    await page.get_by_label("Name").fill("Fan One")
    await page.get_by_label("Email", exact=True).fill("fan1@example.test")
    await page.get_by_label("Password").fill(PASSWORD)
    await shot(page, "signup")
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url(re.compile(rf"/events/{event_id}$"))

    # Choose two seats with mouse and keyboard, hold them.
    await page.locator('.seat[data-label="S1, row A, seat 3"]').click()
    seat4 = page.locator('.seat[data-label="S1, row A, seat 4"]')
    await seat4.focus()
    await page.keyboard.press("Enter")
    await expect(seat4).to_have_attribute("aria-checked", "true")
    await expect(page.locator("#selection")).to_contain_text("seat 3")
    await shot(page, "seats-selected")
    await page.get_by_role("button", name="Hold these tickets").click()
    await page.wait_for_url(re.compile(r"/checkout/"))
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
    await expect(page.locator("#total")).to_contain_text("160.00")

    # A declined card is explained and the hold is kept; then the good card pays.
    await page.get_by_label("Card (test tokens)").select_option("tok_declined")
    await page.get_by_role("button", name="Pay").click()
    await expect(page.locator("#messages")).to_contain_text("declined")
    await shot(page, "checkout-declined")
    await page.get_by_label("Card (test tokens)").select_option("tok_ok")
    await page.get_by_role("button", name="Pay").click()
    await page.wait_for_url(re.compile(r"/orders/"))
    order_id = page.url.rsplit("/", 1)[1]

    tickets = page.locator("#tickets li")
    await expect(tickets).to_have_count(2)
    qr = page.get_by_role("img", name="QR code of ticket 1")
    await expect(qr).to_have_attribute("src", re.compile(r"^data:image/svg\+xml"))
    await expect(page.locator('#tickets img[src^="data:image/svg+xml"]')).to_have_count(2)
    await shot(page, "confirmation-qr")

    # The seats are sold on the public map now.
    seats = await stack.call("GET", f"{stack.shop}/api/events/{event_id}/seats")
    sold = {(s["row"], s["number"]) for s in seats["seats"] if s["state"] == "sold"}
    assert sold == {("A", "3"), ("A", "4")}
    await page.goto(f"{stack.shop}/me/orders")
    await expect(page.locator("#orders")).to_contain_text("Browser Test Night")
    await shot(page, "my-orders")

    # At the door: the organizer's check-in page accepts the code once; the dashboard shows the sale.
    orders = await stack.call("GET", f"{stack.shop}/api/orders/{order_id}", headers=organizer.headers)
    code = orders["tickets"][0]["code"]
    door_context = await browser.new_context(viewport={"width": 390, "height": 844})
    await door_context.add_init_script(signed_in_script(organizer.token, {
        "id": organizer.id, "name": "Door Staff", "email": organizer.email, "roles": ["organizer"]}))
    door = await door_context.new_page()
    await door.goto(f"{stack.shop}/organizer/checkin")
    await door.get_by_label("Ticket code").fill(code)
    await door.get_by_role("button", name="Check in").click()
    await expect(door.locator("#messages")).to_contain_text("Welcome")
    await shot(door, "checkin-ok")
    await door.get_by_label("Ticket code").fill(code)
    await door.get_by_role("button", name="Check in").click()
    await expect(door.locator("#messages")).to_contain_text("Already checked in")
    await door.goto(f"{stack.shop}/organizer/events/{event_id}")
    counted = {"timeout": 15_000}  # the worker's relay and dashboard consumer, then the page's next poll
    await expect(door.locator("#st-sold")).to_have_text("2", **counted)
    await expect(door.locator("#st-revenue")).to_have_text("160.00 EUR")
    await expect(door.locator("#chart rect")).to_have_count(60)
    await expect(door.locator("#fn-orders")).to_have_text("1")
    await expect(door.locator("#fn-tickets")).to_have_text("2")
    await expect(door.locator("#fn-payment-failures")).to_have_text("1")  # the declined card
    await expect(door.locator("#fn-checkins")).to_have_text("1", **counted)
    await expect(door.locator("#fn-refunds")).to_have_text("0")
    await expect(door.locator("#counters-freshness")).to_contain_text("Figures counted up to")
    await shot(door, "dashboard-after-sale")


async def test_two_fans_race_for_one_seat_and_the_loser_sees_it_taken(start_stack: Any, create_user: Any,
                                                                      browser: Any, shot: Any) -> None:
    stack = await start_stack()
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="Race Night")
    pages = []
    for i in range(2):
        fan = await create_user(roles=["customer"])
        context = await browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        await context.add_init_script(signed_in_script(fan.token, {"id": fan.id, "name": f"Fan {i}",
                                                                   "email": fan.email, "roles": ["customer"]}))
        page = await context.new_page()
        if i == 0:  # through the event list and its filters
            await page.goto(f"{stack.shop}/")
            await page.get_by_label("City").fill("Lyon")
            await page.get_by_label("Only events with tickets left").check()
            await page.get_by_role("button", name="Search").click()
            await shot(page, "event-list-phone")
            await page.get_by_role("link", name="Race Night").click()
        else:
            await page.goto(f"{stack.shop}/events/{event['id']}")
        pages.append(page)

    label = "S1, row B, seat 2"
    for page in pages:
        await page.locator(f'.seat[data-label="{label}"]').click()
        await expect(page.locator(f'.seat[data-label="{label}"]')).to_have_attribute("aria-checked", "true")
    await shot(pages[0], "fan-a-selected")
    await asyncio.gather(*(p.get_by_role("button", name="Hold these tickets").click() for p in pages))

    async def outcome(page: Any) -> str:
        for _ in range(100):
            if "/checkout/" in page.url:
                return "won"
            if "someone else just took" in (await page.locator("#messages").text_content() or ""):
                return "lost"
            await asyncio.sleep(0.1)
        return "undecided"

    results = await asyncio.gather(*(outcome(p) for p in pages))
    assert sorted(results) == ["lost", "won"], results
    loser = pages[results.index("lost")]
    seat = loser.locator(f'.seat[data-label="{label}"]')
    await expect(seat).to_have_class(re.compile(r"\bheld\b"))
    await expect(seat).to_have_attribute("aria-checked", "false")
    await shot(loser, "loser-told")

    # Without a reload, a seat the winner holds next turns unavailable on the loser's map by polling.
    winner = pages[results.index("won")]
    await shot(winner, "winner-checkout")
    await winner.get_by_role("button", name="Release these tickets").click()
    await winner.wait_for_url(re.compile(r"/events/"))
    other = "S1, row A, seat 5"
    await winner.locator(f'.seat[data-label="{other}"]').click()
    await winner.get_by_role("button", name="Hold these tickets").click()
    await winner.wait_for_url(re.compile(r"/checkout/"))
    await expect(loser.locator(f'.seat[data-label="{other}"]')).to_have_class(re.compile(r"\bheld\b"), timeout=8000)
    await shot(loser, "loser-map-updated")


async def test_general_admission_quantity_is_held_and_shown_at_checkout(start_stack: Any, create_user: Any,
                                                                        browser: Any, shot: Any) -> None:
    stack = await start_stack()
    organizer = await create_user(roles=["organizer"])
    starts = datetime.now(UTC) + timedelta(days=5)
    event = await stack.call("POST", f"{stack.shop}/api/events", headers=organizer.headers, expect=201, json={
        "title": "Standing Night", "category": "club", "venue": {"name": "Warehouse", "city": "Lille"},
        "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=5)).isoformat(), "currency": "EUR",
        "max_tickets_per_order": 4, "tiers": [{"code": "floor", "name": "Floor", "price": 2500, "quantity": 50}]})
    fan = await create_user(roles=["customer"])
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    await context.add_init_script(signed_in_script(fan.token, {"id": fan.id, "name": "GA Fan", "email": fan.email,
                                                               "roles": ["customer"]}))
    page = await context.new_page()
    await page.goto(f"{stack.shop}/events/{event['id']}")
    await page.get_by_label(re.compile("Floor")).fill("3")
    await expect(page.locator("#selection")).to_have_text("3 \u00d7 floor")
    await shot(page, "ga-quantity")
    await page.get_by_role("button", name="Hold these tickets").click()
    await page.wait_for_url(re.compile(r"/checkout/"))
    await expect(page.locator("#items tbody tr")).to_have_count(3)
    await expect(page.locator("#total")).to_have_text("75.00 EUR")
    await shot(page, "ga-checkout")
