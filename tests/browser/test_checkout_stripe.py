"""Paying in a real browser with the Stripe gateway against the local Stripe server exactly as
``stagedoor up`` serves it (stagedoor/dev_stripe.py; nothing is routed or added in the test): a Stripe
Elements card field (localstripe's Stripe.js stand-in with the calls the launcher adds to it), the bank's
3-D Secure step after a 202 and the same purchase repeated under its Idempotency-Key; a decline after
3-D Secure and a failed authentication keep the hold. With the mock gateway, every page says it is in
test mode and the checkout offers the test tokens."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from stagedoor.dev_stripe import LocalStripe
from tests.support.browser import Stack, signed_in_script
from tests.support.localstripe import CARD_3DS, CARD_3DS_THEN_DECLINED, CARD_OK, StripeAccount

playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests need playwright")
expect = playwright_api.expect

TEST_MODE = re.compile("Test mode: no real money")


class Purchases:
    """The page's purchase requests and their answers, as the browser sent and got them."""

    def __init__(self, page: Any) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []  # (Idempotency-Key, body)
        self.statuses: list[int] = []
        self.actions: list[asyncio.Future[Any]] = []  # the 202 answers' bodies
        page.on("request", self._request)
        page.on("response", self._response)

    @staticmethod
    def _is_purchase(url: str) -> bool:
        return bool(re.search(r"/api/holds/[^/]+/purchase$", url))

    def _request(self, request: Any) -> None:
        if self._is_purchase(request.url) and request.method == "POST":
            self.sent.append((request.headers["idempotency-key"], json.loads(request.post_data)))

    def _response(self, response: Any) -> None:
        if self._is_purchase(response.url):
            self.statuses.append(response.status)
            if response.status == 202:
                self.actions.append(asyncio.ensure_future(response.json()))

    async def intents(self) -> list[str]:
        """The payment intents the 202 answers named."""
        return [(await action)["payment_intent"] for action in self.actions]


async def stripe_stack(start_stack: Any, localstripe: LocalStripe, account: StripeAccount) -> Stack:
    stack: Stack = await start_stack(payment_gateway="stripe", stripe_api_key=account.api_key,
                                     stripe_publishable_key=account.publishable_key, stripe_api_base=localstripe.url)
    return stack


async def fan_page(browser: Any, stack: Stack, create_user: Any) -> Any:
    fan = await create_user(roles=["customer"])
    context = await browser.new_context(viewport={"width": 1000, "height": 900})
    await context.add_init_script(signed_in_script(fan.token, {"id": fan.id, "name": "Card Fan", "email": fan.email,
                                                               "roles": ["customer"]}))
    return await context.new_page()


async def hold_at_checkout(page: Any, stack: Stack, event_id: str, seat: str) -> str:
    await page.goto(f"{stack.shop}/events/{event_id}")
    await page.locator(f'.seat[data-label="{seat}"]').click()
    await page.get_by_role("button", name="Hold these tickets").click()
    await page.wait_for_url(re.compile(r"/checkout/"))
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
    return str(page.url.rsplit("/", 1)[1])


async def enter_card(page: Any, number: str) -> None:
    """Type into the stand-in's card element (its inputs are named by placeholder)."""
    for field, value in (("number", number), ("exp_month", "12"), ("exp_year", "34"), ("cvc", "123"),
                         ("postal_code", "69001")):
        await page.locator("#card-element").get_by_placeholder(field, exact=True).fill(value)


async def test_a_fan_pays_with_a_3d_secure_card_through_stripe_elements_and_gets_the_order(
        start_stack: Any, create_user: Any, browser: Any, shot: Any, localstripe: LocalStripe,
        stripe_account: StripeAccount) -> None:
    stack = await stripe_stack(start_stack, localstripe, stripe_account)
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="Secure Night")
    page = await fan_page(browser, stack, create_user)
    purchases = Purchases(page)
    blocked: list[str] = []
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)

    await hold_at_checkout(page, stack, event["id"], "S1, row A, seat 2")
    await expect(page.locator("#test-mode")).to_have_text(TEST_MODE)  # pk_test_ keys: Stripe's test mode
    await expect(page.get_by_label("Card (test tokens)")).to_have_count(0)  # the mock's select is gone
    await expect(page.locator("#card-element input")).to_have_count(5)  # the card element is mounted
    await enter_card(page, CARD_3DS)
    await shot(page, "card-entered")

    await page.locator("#pay").focus()
    await page.keyboard.press("Enter")
    # 202: the bank's step, announced in the live region; the stand-in's dialog takes the focus.
    await expect(page.locator("#payment-step")).to_contain_text("Your bank asks you to confirm this payment")
    complete = page.get_by_role("button", name="Complete authentication")
    await expect(complete).to_be_focused()
    await shot(page, "3d-secure-step")
    await page.keyboard.press("Enter")

    await page.wait_for_url(re.compile(r"/orders/"))
    await expect(page.locator("#tickets li")).to_have_count(1)
    await shot(page, "order")
    assert purchases.statuses == [202, 201]
    [(key, body), (again_key, again_body)] = purchases.sent
    assert again_key == key and again_body == body  # the same request repeated after the bank's step
    assert body["payment"]["method"] == "card" and body["payment"]["payment_method"].startswith("pm_")
    assert "token" not in body["payment"]
    [intent_id] = await purchases.intents()
    intent = await stripe_account.intent(intent_id)
    assert (intent["status"], intent["amount"], intent["payment_method"]) == (
        "succeeded", 8000, body["payment"]["payment_method"])
    seats = await stack.call("GET", f"{stack.shop}/api/events/{event['id']}/seats")
    assert [s["state"] for s in seats["seats"] if (s["row"], s["number"]) == ("A", "2")] == ["sold"]
    assert blocked == []  # the checkout page's CSP let the card field and its calls through


async def test_a_decline_after_3d_secure_and_a_failed_authentication_keep_the_hold_then_a_card_buys_it(
        start_stack: Any, create_user: Any, browser: Any, shot: Any, localstripe: LocalStripe,
        stripe_account: StripeAccount) -> None:
    stack = await stripe_stack(start_stack, localstripe, stripe_account)
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="Declined Night")
    page = await fan_page(browser, stack, create_user)
    purchases = Purchases(page)
    hold_id = await hold_at_checkout(page, stack, event["id"], "S1, row B, seat 1")
    not_confirmed = "Your bank did not confirm this payment, so nothing was charged. Your tickets are still held"

    # The bank authenticates the fan, then declines the card.
    await enter_card(page, CARD_3DS_THEN_DECLINED)
    await page.get_by_role("button", name="Pay").click()
    await page.get_by_role("button", name="Complete authentication").click()
    await expect(page.locator("#messages")).to_contain_text(not_confirmed)
    await expect(page.locator("#payment-step")).to_have_text("")
    await shot(page, "declined-after-3d-secure")
    assert purchases.statuses == [202, 402]

    # The fan fails the bank's check.
    await enter_card(page, CARD_3DS)
    await page.get_by_role("button", name="Pay").click()
    await page.get_by_role("button", name="Fail authentication").click()
    await expect(page.locator("#messages")).to_contain_text(not_confirmed)
    assert purchases.statuses == [202, 402, 202, 402]
    declined_key, failed_key = purchases.sent[0][0], purchases.sent[2][0]
    assert declined_key != failed_key  # a refused purchase is retried under a new key
    for intent_id in await purchases.intents():
        assert (await stripe_account.intent(intent_id))["status"] == "requires_payment_method"  # nothing charged

    # The hold is still the fan's, and the countdown runs: another card buys it.
    fan_hold = await page.evaluate(
        "fetch('/api/holds/' + document.body.dataset.holdId,"
        " {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('sd_access_token')}}).then(r => r.json())")
    assert fan_hold["hold_id"] == hold_id and fan_hold["state"] == "held"
    await expect(page.locator("#countdown")).not_to_have_text("0:00")
    await enter_card(page, CARD_OK)
    await page.get_by_role("button", name="Pay").click()
    await page.wait_for_url(re.compile(r"/orders/"))
    assert purchases.statuses == [202, 402, 202, 402, 201]
    await shot(page, "bought-with-another-card")


async def test_with_the_mock_gateway_every_page_says_test_mode_and_checkout_keeps_the_test_tokens(
        start_stack: Any, create_user: Any, browser: Any, shot: Any, admin_headers: dict[str, str]) -> None:
    stack = await start_stack()
    organizer = await create_user(roles=["organizer"])
    event = await stack.create_event(organizer.headers, title="Mock Night")
    gated = await stack.create_event(organizer.headers, title="Queued Night")  # its room gates it
    await stack.put_room("mock-room", event_id=gated["id"], rate_per_s=5, max_active=100,
                         shop_url=f"{stack.shop}/events/{gated['id']}")
    page = await fan_page(browser, stack, create_user)
    for url in (f"{stack.queue}/rooms/mock-room", f"{stack.shop}/", f"{stack.shop}/events/{event['id']}",
                f"{stack.shop}/signin",
                f"{stack.shop}/me/orders", f"{stack.shop}/organizer", f"{stack.shop}/events/999999",
                f"{stack.admission}/console"):
        await page.goto(url)
        banner = page.locator("#test-mode")
        await expect(banner).to_be_visible()
        await expect(banner).to_have_text(re.compile("Test mode: no real money. Payments go to a simulated gateway"))
    await shot(page, "console-banner")

    await hold_at_checkout(page, stack, event["id"], "S1, row A, seat 1")
    await expect(page.locator("#test-mode")).to_be_visible()
    await expect(page.locator("#card-element")).to_have_count(0)
    select = page.get_by_label("Card (test tokens)")
    await select.select_option("tok_declined")
    await page.get_by_role("button", name="Pay").click()
    await expect(page.locator("#messages")).to_contain_text("Your payment was declined")
    await select.select_option("tok_ok")
    await page.get_by_role("button", name="Pay").click()
    await page.wait_for_url(re.compile(r"/orders/"))
    await expect(page.locator("#test-mode")).to_be_visible()
    await shot(page, "mock-order")
