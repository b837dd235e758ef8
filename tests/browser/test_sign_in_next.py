"""After signing in (or up) the shop follows ``?next=`` only to a path on its own origin: in a
real browser, every hostile value lands the fan on the shop's home page, never elsewhere."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests need playwright")
expect = playwright_api.expect

PASSWORD = "correct horse battery staple"
CHEAP = {"rate_limits_enabled": False, "argon2_time_cost": 1, "argon2_memory_kib": 1024}

# The raw query text after "next=" (as an attacker would write the link).
HOSTILE = [
    "/%09/evil.example",                 # a tab, dropped by the URL parser: "//evil.example"
    "/%0a/evil.example",                 # a newline, dropped the same way
    "/%0d%0a/evil.example",
    "//evil.example",
    "%2F%2Fevil.example",                # "//evil.example" once decoded
    "/%5Cevil.example",                  # "/\evil.example": a backslash is a slash to the parser
    "/\\evil.example",
    "%5C%5Cevil.example",
    "https://evil.example",
    quote("https://evil.example/", safe=""),
    "http:evil.example",
    "javascript:alert(1)",
    quote("javascript:alert(document.domain)", safe=""),
    "%20//evil.example",                 # a leading space
    "/%09%09//evil.example",
    "data:text/html,<script>alert(1)</script>",
    "/.//evil.example",                  # dot segments: the parsed path becomes "//evil.example"
    "/a/..//evil.example",
]


async def _watch(context: Any) -> tuple[list[str], list[str]]:
    """Record every request to a host that is not 127.0.0.1 (answered by a marker page, so a
    followed redirect is seen even without DNS) and every dialog a page opens."""
    foreign: list[str] = []
    dialogs: list[str] = []

    async def elsewhere(route: Any) -> None:
        foreign.append(route.request.url)
        await route.fulfill(status=200, content_type="text/html", body="<h1>evil</h1>")

    await context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), elsewhere)

    def on_page(page: Any) -> None:
        async def on_dialog(dialog: Any) -> None:
            dialogs.append(dialog.message)
            await dialog.dismiss()
        page.on("dialog", on_dialog)

    context.on("page", on_page)
    return foreign, dialogs


async def test_sign_in_follows_a_hostile_next_nowhere_but_home(start_stack: Any, browser: Any, shot: Any) -> None:
    stack = await start_stack(**CHEAP)
    email = f"fan-{uuid.uuid4().hex[:8]}@example.test"
    await stack.call("POST", f"{stack.shop}/api/users", json={"email": email, "password": PASSWORD, "name": "Fan"},
                     expect=201)
    context = await browser.new_context()
    foreign, dialogs = await _watch(context)
    page = await context.new_page()

    async def sign_in_with(raw_next: str) -> str:
        await page.goto(f"{stack.shop}/signin?next={raw_next}")
        await page.evaluate("sessionStorage.clear()")
        await page.get_by_label("Email", exact=True).fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(lambda url: "/signin" not in url)
        await page.wait_for_load_state()
        return page.url

    # the control: a genuine path of ours is followed, query and fragment included
    assert await sign_in_with(quote("/me/orders?x=1#top", safe="")) == f"{stack.shop}/me/orders?x=1#top"

    for raw in HOSTILE:
        landed = await sign_in_with(raw)
        parts = urlsplit(landed)
        assert f"{parts.scheme}://{parts.netloc}" == stack.shop, (raw, landed)
        assert parts.path == "/", (raw, landed)
        await expect(page.locator("#whoami")).to_be_visible()  # signed in, on our home page
    assert foreign == [] and dialogs == []
    await shot(page, "home-after-hostile-next")


async def test_sign_up_and_the_sign_up_link_follow_a_hostile_next_nowhere(start_stack: Any, browser: Any) -> None:
    stack = await start_stack(**CHEAP)
    context = await browser.new_context()
    foreign, dialogs = await _watch(context)
    page = await context.new_page()
    for raw in ("/%09/evil.example", "//evil.example", "/%5Cevil.example", "https://evil.example",
                "javascript:alert(1)"):
        await page.goto(f"{stack.shop}/signin?next={raw}")
        # the "Sign up" link passes on only a next that would be followed: none here
        link = page.locator("#main").get_by_role("link", name="Sign up")
        assert await link.get_attribute("href") == "/signup"
        await page.goto(f"{stack.shop}/signup?next={raw}")
        await page.evaluate("sessionStorage.clear()")
        await page.get_by_label("Name").fill("Fan")
        await page.get_by_label("Email", exact=True).fill(f"fan-{uuid.uuid4().hex[:8]}@example.test")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Create account").click()
        await page.wait_for_url(lambda url: "/signup" not in url)
        await page.wait_for_load_state()
        assert page.url == f"{stack.shop}/", (raw, page.url)
    assert foreign == [] and dialogs == []

    # a genuine next survives the trip through the sign-up link
    await page.goto(f"{stack.shop}/signin?next={quote('/me/orders', safe='')}")
    link = page.locator("#main").get_by_role("link", name="Sign up")
    assert await link.get_attribute("href") == "/signup?next=%2Fme%2Forders"


async def test_no_server_route_redirects_to_next_or_echoes_it(start_stack: Any) -> None:
    stack = await start_stack(**CHEAP)
    for path in ("/signin", "/signup", "/", "/me/orders"):
        for raw in ("//evil.example", "/%09/evil.example", "https://evil.example"):
            async with stack.http.get(f"{stack.shop}{path}?next={raw}", allow_redirects=False) as res:
                assert res.status == 200, (path, raw)
                assert "Location" not in res.headers
                assert "evil.example" not in await res.text()
