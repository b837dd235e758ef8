"""The queue page while every ticket left is in someone's basket: it says so, and lets the fan in
when a ticket comes back (stock-aware admission, docs/admission.md "Admission and the stock")."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests need playwright")
expect = playwright_api.expect


async def _admitted(stack: Any, room: str) -> str:
    """A fan who joins through the API and polls until admitted: their admission token."""
    joined = await stack.call("POST", f"{stack.queue}/api/rooms/{room}/join", json={})
    auth = {"Authorization": "Bearer " + joined["queue_token"]}
    deadline = time.monotonic() + 10
    status = joined
    while status["state"] != "admitted":
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)
        status = await stack.call("GET", f"{stack.queue}/api/rooms/{room}/status", headers=auth)
    return str(status["admission_token"])


async def test_queue_page_says_all_held_then_lets_the_fan_in_when_a_ticket_comes_back(
        start_stack: Any, create_user: Any, browser: Any, shot: Any) -> None:
    stack = await start_stack()
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="Last Seats Night", rows=2, seats=1)
    event_id = event["id"]
    await stack.put_room("last-seat", event_id=event_id, rate_per_s=50, abandon_after_s=120,
                         shop_url=f"{stack.shop}/events/{event_id}")

    # The first fan is let in for the two seats and holds both.
    first = await create_user()
    token = await _admitted(stack, "last-seat")
    seats = await stack.call("GET", f"{stack.shop}/api/events/{event_id}/seats")
    seat_ids = [seat["id"] for seat in seats["seats"]]
    assert len(seat_ids) == 2
    hold = await stack.call("POST", f"{stack.shop}/api/events/{event_id}/holds", expect=201,
                            json={"seats": seat_ids}, headers={**first.headers, "X-Admission-Token": token})

    # The second fan waits, and the page tells why.
    page = await browser.new_page()
    await page.goto(f"{stack.queue}/rooms/last-seat")
    await page.get_by_role("button", name="Join the queue").click()
    await expect(page.locator("#position")).to_have_text("1")
    note = page.locator("#held-note")
    await expect(note).to_be_visible(timeout=5000)
    await expect(note).to_contain_text("All remaining tickets are in someone's basket")
    await expect(page.locator("#eta-note")).to_be_hidden()
    await shot(page, "queue-all-held")
    await asyncio.sleep(1.0)  # many admission ticks: still nobody is let in past the stock
    await expect(page.locator("#position")).to_have_text("1")

    # The first fan lets the seats go: the second is let in, without a reload of their own.
    await stack.call("DELETE", f"{stack.shop}/api/holds/{hold['hold_id']}", expect=204, headers=first.headers)
    await page.wait_for_url(f"{stack.shop}/events/{event_id}**", timeout=10000)
    await shot(page, "queue-all-held-admitted")
