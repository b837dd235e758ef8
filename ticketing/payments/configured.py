"""The configured payment gateway (``payment_gateway``) and its place in an app's life.

``gateway_ctx`` (a cleanup context of the ticketing app and the worker) builds the gateway once
per app, before the contexts that charge or refund through it, and closes its connections on
shutdown. A gateway set in ``GATEWAY`` before startup (tests, benchmarks) is used as it is and
left to whoever set it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from stagedoor.settings import Settings, require_payment_gateway
from stagedoor.web import SETTINGS
from ticketing.appkeys import GATEWAY
from ticketing.payments.gateway import MockGateway, PaymentGateway
from ticketing.payments.stripe_gateway import StripeGateway


def gateway_from_settings(settings: Settings) -> PaymentGateway:
    """The gateway ``payment_gateway`` names; SettingsError when it lacks what it needs."""
    require_payment_gateway(settings)
    if settings.payment_gateway == "stripe":
        return StripeGateway.from_settings(settings)
    return MockGateway(latency_ms=settings.payment_mock_latency_ms, slow_ms=settings.payment_mock_slow_ms,
                       failure_rate=settings.payment_mock_failure_rate)


def other_gateway(settings: Settings, name: str) -> PaymentGateway | None:
    """A gateway other than the configured one, for the charges it took before the deployment switched
    (their payments rows name it): Stripe while its secret key is still set; the mock for mock charges
    (test money: any mock refunds them, nothing real goes back). None: it cannot be reached."""
    if name == "stripe" and settings.stripe_api_key:
        return StripeGateway.from_settings(settings)
    if name == "mock":
        return MockGateway()
    return None


async def gateway_ctx(app: web.Application) -> AsyncIterator[None]:
    if GATEWAY in app:
        yield
        return
    gateway = gateway_from_settings(app[SETTINGS])
    app[GATEWAY] = gateway
    try:
        yield
    finally:
        await gateway.aclose()
