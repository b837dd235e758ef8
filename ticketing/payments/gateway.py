"""The payment gateway boundary: the interface purchases charge through, and the mock.

A real gateway (Stripe, Adyen, ...) implements :class:`PaymentGateway`. Both calls take
an idempotency key, as real gateways do, so a retried charge after a lost answer cannot
charge twice. Outcomes are exceptions with meaning to the caller:

- :class:`ChargeDeclined`: the card was refused. Final; never retried, never a breaker failure.
- :class:`GatewayFailure`: the gateway failed or answered nothing. Retried with backoff, and
  counted by the circuit breaker (ticketing/payments/charging.py).

The mock is a fake at a true outside boundary (STYLE.md 12): ``tok_ok`` succeeds,
``tok_declined`` is declined, ``tok_error`` fails every time, ``tok_slow`` answers after
``slow_ms``; ``latency_ms`` and ``failure_rate`` shape every call. It records charges and
refunds so tests can count them. ``lookup`` asks which charge an idempotency key made (the
worker's reconciler settles unanswered charges with it). One mock lives in one process: the
worker's reconciler sees the charges of a mock in another process as never made, so the
services share a gateway (``ticketing.appkeys.GATEWAY``) in tests that need the reconciler.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from typing import Protocol

import msgspec

from stagedoor.settings import Settings


class Charge(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    amount: int
    currency: str


class ChargeDeclined(Exception):
    """The payment method was refused (final)."""

    def __init__(self, reason: str = "card declined") -> None:
        super().__init__(reason)
        self.reason = reason


class GatewayFailure(Exception):
    """The gateway failed or did not answer (transient: retry, count towards the breaker)."""


class PaymentGateway(Protocol):
    async def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str) -> Charge:
        """Charge ``amount`` minor units; the same ``idempotency_key`` returns the same charge."""

    async def refund(self, charge: Charge, *, idempotency_key: str) -> str:
        """Refund a charge in full; returns the refund id. Refunding twice is a no-op."""

    async def lookup(self, idempotency_key: str) -> Charge | None:
        """The charge made with this idempotency key, or None when the gateway made none (a charge
        refunded since is still returned). Raises GatewayFailure when the gateway does not answer."""


def gateway_from_settings(settings: Settings) -> PaymentGateway:
    """The configured gateway (``payment_gateway``; the mock is the only one until a real adapter is wired)."""
    return MockGateway(latency_ms=settings.payment_mock_latency_ms, slow_ms=settings.payment_mock_slow_ms,
                       failure_rate=settings.payment_mock_failure_rate)


class MockGateway:
    """In-process fake gateway with configurable latency and failures."""

    def __init__(self, *, latency_ms: int = 0, slow_ms: int = 2_000, failure_rate: float = 0.0,
                 rng: random.Random | None = None) -> None:
        self.latency_ms = latency_ms
        self.slow_ms = slow_ms
        self.failure_rate = failure_rate
        self._rng = rng or random.Random()
        self.charges: dict[str, Charge] = {}      # idempotency key -> charge (each charged once)
        self.refunds: dict[str, str] = {}         # charge id -> refund id
        self.calls = 0                            # charge calls, retries included

    @property
    def charge_count(self) -> int:
        """Distinct charges made (what a card holder would see on a statement)."""
        return len(self.charges)

    async def _answer_delay(self, token: str) -> None:
        delay_ms = self.slow_ms if token == "tok_slow" else self.latency_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)

    async def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str) -> Charge:
        self.calls += 1
        await self._answer_delay(token)
        if token == "tok_error" or (self.failure_rate and self._rng.random() < self.failure_rate):
            raise GatewayFailure("mock gateway error")
        existing = self.charges.get(idempotency_key)
        if existing is not None:  # as real gateways do: a key's first result is its answer, whatever the card
            return existing
        if token == "tok_declined":
            raise ChargeDeclined("card declined")
        if token not in ("tok_ok", "tok_slow"):
            raise ChargeDeclined("unknown payment token")
        charge = Charge(id="ch_" + secrets.token_hex(12), amount=amount, currency=currency)
        self.charges[idempotency_key] = charge
        return charge

    async def lookup(self, idempotency_key: str) -> Charge | None:
        await self._answer_delay("")
        return self.charges.get(idempotency_key)

    async def refund(self, charge: Charge, *, idempotency_key: str) -> str:
        await self._answer_delay("")
        existing = self.refunds.get(charge.id)
        if existing is None:
            existing = self.refunds[charge.id] = "re_" + secrets.token_hex(12)
        return existing
