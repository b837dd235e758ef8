"""The checkout page's card field per gateway, without a browser: the mock's test-token select or a Stripe
Elements field (Stripe.js from Stripe, or a local server's stand-in), the checkout page's CSP naming exactly
the card field's origins (and no other page's), and the test-mode banner on every page when no real
money can move."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from stagedoor.settings import Settings

LIVE_SECRET = "sk_live_" + secrets.token_urlsafe(32)
LIVE_PUBLISHABLE = "pk_live_" + secrets.token_urlsafe(24)
TEST_SECRET = "sk_test_" + secrets.token_urlsafe(32)
TEST_PUBLISHABLE = "pk_test_" + secrets.token_urlsafe(24)
LOCAL_SERVER = "http://127.0.0.1:8420"
MOCK_BANNER = "Test mode: no real money. Payments go to a simulated gateway"
STRIPE_BANNER = "Test mode: no real money. Payments use Stripe's test mode"
SHOP_PAGES = ("/", "/signin", "/signup", "/me/orders", "/checkout/h1", "/orders/o1", "/organizer", "/events/999999")


def csp_of(res: Any) -> dict[str, str]:
    header = res.headers["Content-Security-Policy"]
    return dict(d.strip().split(" ", 1) for d in header.split(";"))


def scripts_of(html: str) -> list[str]:
    return re.findall(r'<script src="([^"]+)"', html)


async def pages(client: Any, paths: tuple[str, ...] = SHOP_PAGES) -> dict[str, tuple[Any, str]]:
    found = {}
    for path in paths:
        res = await client.get(path)
        assert res.status in (200, 404) and res.content_type == "text/html", path
        found[path] = (res, await res.text())
    return found


async def test_with_the_mock_every_page_says_test_mode_and_checkout_offers_the_test_tokens(
        service_client: Any, settings: Settings) -> None:
    assert settings.payment_gateway == "mock"
    shop = await pages(await service_client("ticketing"))
    console = await pages(await service_client("admission"), ("/console",))
    for path, (_res, html) in {**shop, **console}.items():
        assert html.count('id="test-mode"') == 1 and MOCK_BANNER in html, path
    res, html = shop["/checkout/h1"]
    assert 'data-gateway="mock"' in html and "data-stripe-key" not in html
    assert re.findall(r'<option value="(tok_[a-z]+)"', html) == ["tok_ok", "tok_declined", "tok_error", "tok_slow"]
    assert 'id="card-element"' not in html
    assert [s for s in scripts_of(html) if not s.startswith("/static/")] == []
    assert res.headers["Content-Security-Policy"] == shop["/"][0].headers["Content-Security-Policy"]
    assert "frame-src" not in csp_of(res)


async def test_with_live_stripe_checkout_loads_stripe_js_from_stripe_and_only_it_may_run_frame_and_connect(
        service_client: Any, make_settings: Callable[..., Settings]) -> None:
    live = make_settings(payment_gateway="stripe", stripe_api_key=LIVE_SECRET, stripe_publishable_key=LIVE_PUBLISHABLE)
    shop = await pages(await service_client("ticketing", live))
    for path, (_res, html) in shop.items():
        assert 'id="test-mode"' not in html, path  # live keys: real money, no banner
    res, html = shop["/checkout/h1"]
    assert f'data-gateway="stripe" data-stripe-key="{LIVE_PUBLISHABLE}"' in html
    assert LIVE_SECRET not in html
    assert [s for s in scripts_of(html) if not s.startswith("/static/")] == ["https://js.stripe.com/v3/"]
    assert html.index("https://js.stripe.com/v3/") < html.index("/static/shop.js")  # mounted by shop.js
    assert 'id="card-element"' in html and '<label for="card-element"' in html
    assert 'id="card"' not in html and '<option value="tok_' not in html  # no test tokens with a real gateway

    csp = csp_of(res)
    plain = csp_of(shop["/"][0])
    assert csp["script-src"] == "'self' https://js.stripe.com https://*.js.stripe.com"
    assert csp["frame-src"] == "https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com"
    assert csp["connect-src"] == plain["connect-src"] + " https://api.stripe.com"
    assert {k: v for k, v in csp.items() if k not in ("script-src", "frame-src", "connect-src")} == {
        k: v for k, v in plain.items() if k not in ("script-src", "connect-src")}
    for path, (other, _html) in shop.items():  # the other pages run no third party's script
        if path != "/checkout/h1":
            assert "stripe" not in other.headers["Content-Security-Policy"], path


async def test_stripe_test_keys_show_the_banner_and_a_local_server_serves_the_stripe_js_stand_in(
        service_client: Any, make_settings: Callable[..., Settings]) -> None:
    test_mode = make_settings(payment_gateway="stripe", stripe_api_key=TEST_SECRET,
                              stripe_publishable_key=TEST_PUBLISHABLE)
    shop = await pages(await service_client("ticketing", test_mode), ("/", "/checkout/h1"))
    for path, (_res, html) in shop.items():
        assert STRIPE_BANNER in html, path
    assert "https://js.stripe.com/v3/" in scripts_of(shop["/checkout/h1"][1])

    local = make_settings(payment_gateway="stripe", stripe_api_key=TEST_SECRET,
                          stripe_publishable_key=TEST_PUBLISHABLE, stripe_api_base=LOCAL_SERVER)
    shop = await pages(await service_client("ticketing", local), ("/", "/checkout/h1"))
    res, html = shop["/checkout/h1"]
    assert STRIPE_BANNER in html
    assert [s for s in scripts_of(html) if not s.startswith("/static/")] == [f"{LOCAL_SERVER}/js.stripe.com/v3/"]
    csp = csp_of(res)
    assert csp["script-src"] == f"'self' {LOCAL_SERVER}"
    assert csp["connect-src"].endswith(f" {LOCAL_SERVER}")
    assert "stripe.com" not in res.headers["Content-Security-Policy"]
    assert "frame-src" not in csp  # the stand-in draws no frame


def test_stripes_own_api_base_is_stripe_and_any_other_server_is_local(make_settings: Callable[..., Settings]) -> None:
    from stagedoor.payment_pages import card_field, no_real_money_notice

    def stripe(base: str, publishable: str = LIVE_PUBLISHABLE, secret: str = LIVE_SECRET) -> Settings:
        return make_settings(payment_gateway="stripe", stripe_api_key=secret, stripe_publishable_key=publishable,
                             stripe_api_base=base)

    for base in ("", "https://api.stripe.com", "https://API.stripe.com/"):
        field = card_field(stripe(base))
        assert (field.script_url, field.connect_sources) == ("https://js.stripe.com/v3/", ("https://api.stripe.com",))
        assert no_real_money_notice(stripe(base)) is None, base
    local = card_field(stripe("http://127.0.0.1:9999/some/prefix"))
    assert (local.script_url, local.script_sources) == ("http://127.0.0.1:9999/js.stripe.com/v3/",
                                                        ("http://127.0.0.1:9999",))
    assert no_real_money_notice(stripe("http://127.0.0.1:9999")) is not None  # a local server moves no money
    assert card_field(make_settings()).gateway == "mock" and card_field(make_settings()).script_url == ""
