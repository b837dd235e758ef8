"""What the pages show and load about payments, read from the settings.

- ``no_real_money_notice``: the test-mode banner every page carries when no real money can move: the
  mock gateway, or Stripe with a test-mode publishable key (``pk_test_``) or a local Stripe-compatible
  server (``STAGEDOOR_STRIPE_API_BASE`` naming another server than Stripe's).
- ``card_field``: how the checkout page takes a card. With the mock: the select of test tokens. With
  Stripe: a Stripe Elements card element from Stripe.js, loaded from ``https://js.stripe.com/v3/``, or,
  when the API base is a local server, from that server's Stripe.js stand-in (localstripe serves one at
  ``/js.stripe.com/v3/``), and the origins the checkout page's Content-Security-Policy must allow for it.

The Stripe.js sources are Stripe's documented CSP directives for Stripe.js
(https://docs.stripe.com/security/guide#content-security-policy) without Google Maps, which only the
Address Element's autocomplete loads: the page uses the card element alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from stagedoor.pages import tr
from stagedoor.security import html_csp
from stagedoor.settings import Settings

STRIPE_API_ORIGIN = "https://api.stripe.com"
STRIPE_JS_URL = "https://js.stripe.com/v3/"
STRIPE_JS_SOURCES = ("https://js.stripe.com", "https://*.js.stripe.com")  # script-src
STRIPE_FRAME_SOURCES = ("https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com")  # frame-src
STRIPE_CONNECT_SOURCES = (STRIPE_API_ORIGIN,)  # connect-src: createPaymentMethod and the 3-D Secure step
STAND_IN_PATH = "/js.stripe.com/v3/"  # where a local Stripe-compatible server serves its Stripe.js stand-in


class CardField(msgspec.Struct, frozen=True, kw_only=True):
    """What the checkout page is given to take a card (``script_url`` and the CSP sources: Stripe only)."""

    gateway: Literal["mock", "stripe"]
    publishable_key: str = ""
    script_url: str = ""
    script_sources: tuple[str, ...] = ()
    frame_sources: tuple[str, ...] = ()
    connect_sources: tuple[str, ...] = ()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def local_stripe_origin(settings: Settings) -> str | None:
    """The origin of the Stripe-compatible server ``STAGEDOOR_STRIPE_API_BASE`` names, when it is not
    Stripe's own API (None: Stripe itself)."""
    origin = _origin(settings.stripe_api_base)
    return origin if origin and origin != STRIPE_API_ORIGIN else None


@lru_cache(maxsize=16)
def card_field(settings: Settings) -> CardField:
    if settings.payment_gateway != "stripe":
        return CardField(gateway="mock")
    key = settings.stripe_publishable_key or ""
    local = local_stripe_origin(settings)
    if local is not None:
        return CardField(gateway="stripe", publishable_key=key, script_url=local + STAND_IN_PATH,
                         script_sources=(local,), connect_sources=(local,))
    return CardField(gateway="stripe", publishable_key=key, script_url=STRIPE_JS_URL,
                     script_sources=STRIPE_JS_SOURCES, frame_sources=STRIPE_FRAME_SOURCES,
                     connect_sources=STRIPE_CONNECT_SOURCES)


@lru_cache(maxsize=16)
def checkout_csp(settings: Settings) -> str:
    """The checkout page's Content-Security-Policy: the pages' own plus exactly its card field's origins."""
    field = card_field(settings)
    return html_csp(settings, script=field.script_sources, frame=field.frame_sources,
                    connect=field.connect_sources)


@lru_cache(maxsize=16)
def no_real_money_notice(settings: Settings) -> str | None:
    """The test-mode banner's text, or None when the configured gateway takes real money."""
    if settings.payment_gateway == "mock":
        return tr("test_mode_mock")
    if (settings.stripe_publishable_key or "").startswith("pk_test_") or local_stripe_origin(settings):
        return tr("test_mode_stripe")
    return None
