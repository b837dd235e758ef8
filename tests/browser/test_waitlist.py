"""The waiting list after sold out in a real browser: a fan joins the list on the sold-out event's
page, a ticket comes back (a basket is released), the worker offers it, the fan sees the offer
with its countdown on "My offers", accepts it and buys it through the ordinary checkout; the
organizer's dashboard shows the list's conversion."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.browser import signed_in_script

playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests need playwright")
expect = playwright_api.expect


async def test_fan_joins_the_list_gets_an_offer_accepts_and_buys(start_stack: Any, create_user: Any, browser: Any,
                                                                 shot: Any) -> None:
    stack = await start_stack(worker=True, waitlist_check_interval_s=0.2, hold_sweep_interval_s=0.2,
                              outbox_relay_interval_ms=50, rate_limits_enabled=False)
    organizer = await create_user(roles=["organizer"])
    starts = datetime.now(UTC) + timedelta(days=9)
    event = await stack.call("POST", f"{stack.shop}/api/events", headers=organizer.headers, expect=201, json={
        "title": "Last Tickets Night", "category": "concert", "venue": {"name": "Hall", "city": "Ghent"},
        "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=3)).isoformat(), "currency": "EUR",
        "max_tickets_per_order": 4, "tiers": [{"code": "floor", "name": "Floor", "price": 3500, "quantity": 2}]})
    ev = event["id"]
    buyer, basket = await create_user(), await create_user()
    bought = await stack.call("POST", f"{stack.shop}/api/events/{ev}/holds", headers=basket.headers,
                              json={"tier": "floor", "quantity": 1})
    first = await stack.call("POST", f"{stack.shop}/api/events/{ev}/holds", headers=buyer.headers,
                             json={"tier": "floor", "quantity": 1})
    await stack.call("POST", f"{stack.shop}/api/holds/{first['hold_id']}/purchase", expect=201,
                     headers={**buyer.headers, "Idempotency-Key": "buyer-1"},
                     json={"payment": {"method": "card", "token": "tok_ok"}, "email": "buyer@example.test"})
    await stack.call("PATCH", f"{stack.shop}/api/events/{ev}", headers=organizer.headers, json={"status": "sold_out"})

    fan = await create_user(roles=["customer"])
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    await context.add_init_script(signed_in_script(fan.token, {"id": fan.id, "name": "List Fan", "email": fan.email,
                                                               "roles": ["customer"]}))
    page = await context.new_page()
    await page.goto(f"{stack.shop}/events/{ev}")
    await expect(page.get_by_role("heading", name="Sold out: waiting list")).to_be_visible()
    await page.get_by_label("Tickets wanted").fill("1")
    await page.get_by_role("button", name="Join the waiting list").click()
    await expect(page.locator("#waitlist-status")).to_have_text(re.compile(r"number 1 in line"))
    await expect(page.get_by_role("button", name="Leave the waiting list")).to_be_visible()
    await shot(page, "joined")

    await page.goto(f"{stack.shop}/me/offers")
    await expect(page.locator("#offers")).to_contain_text("No offers right now")
    await stack.call("DELETE", f"{stack.shop}/api/holds/{bought['hold_id']}", headers=basket.headers, expect=204)
    offer = page.locator("#offers .offer")
    await expect(offer).to_have_count(1, timeout=20_000)  # the worker's next look, then the page's next poll
    await expect(offer).to_contain_text("Last Tickets Night")
    await expect(offer).to_contain_text("1 ticket(s) held for you")
    await expect(offer.locator(".countdown")).to_have_text(re.compile(r"^Claim within 1[45]:\d\d$"))
    await shot(page, "offer")

    await offer.get_by_role("button", name="Accept and buy").click()
    await page.wait_for_url(re.compile(r"/checkout/"))
    await expect(page.locator("#total")).to_have_text("35.00 EUR")
    await page.get_by_label("Card (test tokens)").select_option("tok_ok")
    await page.get_by_role("button", name="Pay").click()
    await page.wait_for_url(re.compile(r"/orders/"))
    await expect(page.locator("#tickets li")).to_have_count(1)
    await shot(page, "bought")

    org_context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await org_context.add_init_script(signed_in_script(organizer.token, {
        "id": organizer.id, "name": "Organizer", "email": organizer.email, "roles": ["organizer"]}))
    dash = await org_context.new_page()
    for _ in range(40):  # the worker settles the offer as bought at its next look
        stats = await stack.call("GET", f"{stack.shop}/api/events/{ev}/waitlist/stats", headers=organizer.headers)
        if stats["offers_bought"] == 1:
            break
        await dash.wait_for_timeout(250)
    await dash.goto(f"{stack.shop}/organizer/events/{ev}")
    await expect(dash.locator("#wl-made")).to_have_text("1")
    await expect(dash.locator("#wl-bought")).to_have_text("1")
    await expect(dash.locator("#wl-conversion")).to_have_text("100 %")
    await shot(dash, "organizer-waitlist")
