"""The payment gateway boundary: the interface purchases charge through, and the mock.

A real gateway implements :class:`PaymentGateway` (Stripe: ticketing/payments/stripe_gateway.py;
which one runs is ``payment_gateway``, ticketing/payments/configured.py). Every call that moves
money takes an idempotency key: a retried charge after a lost answer cannot charge twice, and
``lookup`` finds what a key made even when the gateway itself does not keep keys. Outcomes are
exceptions with meaning to the caller:

- :class:`ChargeDeclined`: the card was refused. Final; never retried, never a breaker failure.
- :class:`ChargeRequiresAction`: the bank asks the fan to authenticate (3-D Secure). Nothing is
  charged yet; the browser completes the action with the intent's client secret, then the
  purchase charges again with ``intent_id`` and gets the final answer. Not a failure either.
- :class:`GatewayFailure`: the gateway failed or answered nothing. Retried with backoff, and
  counted by the circuit breaker (ticketing/payments/charging.py).
- :class:`RefundRefused`: the gateway will not refund that amount (more than is left). Final.
- :class:`AlreadyCharged`: ``cancel`` came too late, the payment succeeded (it carries the charge:
  the caller completes the order or refunds it, as for any charge it finds).

Besides charging, a gateway cancels a payment that waits for the fan (``cancel``: an abandoned
3-D Secure step can then never take money later) and lists the payments it made
(``list_payments``: the worker's gateway sweep compares them with our records,
ticketing/payments/sweep.py).

The mock is a fake at a true outside boundary (STYLE.md 12): ``tok_ok`` succeeds,
``tok_declined`` is declined, ``tok_error`` fails every time, ``tok_slow`` answers after
``slow_ms``, ``tok_3ds`` asks for 3-D Secure until a test calls :meth:`MockGateway.authenticate`
on its intent (then the charge with ``intent_id`` succeeds, or is declined when the
authentication failed; ``cancel`` stops a waiting one, and is a no-op for a payment this mock
does not hold); ``latency_ms`` and ``failure_rate`` shape every call. It records
charges, intents and refunds so tests can count them. One mock lives in one process: the
worker's reconciler sees the charges of a mock in another process as never made, so the
services share a gateway (``ticketing.appkeys.GATEWAY``) in tests that need the reconciler.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec


class Charge(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    amount: int
    currency: str


class ChargeDeclined(Exception):
    """The payment method was refused (final)."""

    def __init__(self, reason: str = "card declined") -> None:
        super().__init__(reason)
        self.reason = reason


class ChargeRequiresAction(Exception):
    """The fan must authenticate the payment (3-D Secure) before it can succeed. ``intent_id``
    names the gateway's payment (charge again with it); ``client_secret`` lets the fan's browser
    complete the action (Stripe.js ``handleNextAction``). Never logged: the secret confirms it."""

    def __init__(self, intent_id: str, client_secret: str) -> None:
        super().__init__("the payment needs the customer's authentication (3-D Secure)")
        self.intent_id = intent_id
        self.client_secret = client_secret


class AlreadyCharged(Exception):
    """``cancel`` found the payment succeeded: the money was taken (``charge``), nothing was cancelled."""

    def __init__(self, charge: Charge) -> None:
        super().__init__(f"payment {charge.id} succeeded before it could be cancelled")
        self.charge = charge


class GatewayPayment(msgspec.Struct, frozen=True, kw_only=True):
    """One payment as the gateway lists it (Stripe: a PaymentIntent)."""

    id: str
    status: str  # succeeded | canceled | requires_action | requires_payment_method | processing | ...
    amount: int  # what it took when succeeded (Stripe: amount_received), else what it asked for
    currency: str
    amount_refunded: int  # returned so far, by stagedoor or outside it
    gateway_key: str | None  # our idempotency key, from the payment's metadata (None: not made by stagedoor)
    created: int  # unix seconds, the gateway's clock


class PaymentPage(msgspec.Struct, frozen=True, kw_only=True):
    payments: list[GatewayPayment]
    next: str | None  # where the next page starts (pass it as ``after``); None: the listing is done


class GatewayFailure(Exception):
    """The gateway failed or did not answer (transient: retry, count towards the breaker)."""


class RefundRefused(Exception):
    """The gateway refuses this refund for good (e.g. more than what is left of the charge)."""


class PaymentGateway(Protocol):
    async def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str,
                     metadata: Mapping[str, str] | None = None, intent_id: str | None = None) -> Charge:
        """Charge ``amount`` minor units with the payment method ``token``; the same
        ``idempotency_key`` returns the same charge. ``metadata`` is stored with the payment.
        ``intent_id``: this purchase already has that payment (it answered ChargeRequiresAction):
        report its state now (confirming it if it waits for confirmation) instead of making
        another. Raises ChargeDeclined, ChargeRequiresAction or GatewayFailure."""

    async def refund(self, charge: Charge, *, idempotency_key: str, amount: int | None = None) -> str:
        """Refund ``amount`` minor units of a charge (None: all that is left of it); returns the
        refund id. The same ``idempotency_key`` again returns the same refund; a whole refund of a
        charge with nothing left makes none and returns an earlier refund's id. Raises RefundRefused
        for an amount the charge cannot give back, GatewayFailure when the gateway does not answer."""

    async def lookup(self, idempotency_key: str) -> Charge | None:
        """The charge made with this idempotency key, or None when the gateway made none (a charge
        refunded since is still returned). Raises GatewayFailure when the gateway does not answer
        or cannot tell yet."""

    async def cancel(self, intent_id: str) -> None:
        """Cancel a payment that has not taken money (waiting for the fan's 3-D Secure step, or
        declined): it can never succeed afterwards. Cancelling a cancelled payment is a no-op. Raises
        AlreadyCharged when the payment succeeded meanwhile (nothing cancelled: the caller settles that
        charge), GatewayFailure when the gateway does not answer or the payment is still processing."""

    async def list_payments(self, *, created_from: int, created_to: int, after: str | None = None,
                            limit: int = 100) -> PaymentPage:
        """One page of the payments created between ``created_from`` and ``created_to`` (unix seconds,
        both included), continuing after ``after`` (the previous page's ``next``). The order of the
        pages is the gateway's; a page may hold fewer than ``limit`` (payments outside the range are
        left out). Raises GatewayFailure when the gateway does not answer."""

    async def aclose(self) -> None:
        """Release the gateway's connections (the app's cleanup calls it once)."""


@dataclass
class MockIntent:
    """A tok_3ds payment waiting for (or past) the fan's authentication."""

    id: str
    client_secret: str
    idempotency_key: str
    amount: int
    currency: str
    state: Literal["requires_action", "authenticated", "failed", "canceled"] = "requires_action"
    created: int = 0


class MockGateway:
    """In-process fake gateway with configurable latency and failures."""

    def __init__(self, *, latency_ms: int = 0, slow_ms: int = 2_000, failure_rate: float = 0.0,
                 rng: random.Random | None = None) -> None:
        self.latency_ms = latency_ms
        self.slow_ms = slow_ms
        self.failure_rate = failure_rate
        self._rng = rng or random.Random()
        self.charges: dict[str, Charge] = {}      # idempotency key -> charge (each charged once)
        self.metadata: dict[str, dict[str, str]] = {}  # idempotency key -> metadata of its first call
        self.intents: dict[str, MockIntent] = {}  # intent id -> tok_3ds payment
        self._intent_of_key: dict[str, str] = {}
        self.refunds: dict[str, str] = {}         # charge id -> its first refund's id
        self.refunded: dict[str, int] = {}        # charge id -> amount refunded so far
        self.refund_keys: dict[str, str] = {}     # refund idempotency key -> refund id
        self.created: dict[str, int] = {}         # charge or intent id -> unix seconds it was made
        self.calls = 0                            # charge calls, retries included

    @property
    def charge_count(self) -> int:
        """Distinct charges made (what a card holder would see on a statement)."""
        return len(self.charges)

    def authenticate(self, intent_id: str, *, success: bool = True) -> None:
        """What the fan's browser does with the bank's 3-D Secure page (tests call it)."""
        intent = self.intents[intent_id]
        if intent.state != "requires_action":
            raise ValueError(f"intent {intent_id} is {intent.state}, not waiting for authentication")
        intent.state = "authenticated" if success else "failed"

    async def _answer_delay(self, token: str) -> None:
        delay_ms = self.slow_ms if token == "tok_slow" else self.latency_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)

    async def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str,
                     metadata: Mapping[str, str] | None = None, intent_id: str | None = None) -> Charge:
        self.calls += 1
        await self._answer_delay(token)
        if token == "tok_error" or (self.failure_rate and self._rng.random() < self.failure_rate):
            raise GatewayFailure("mock gateway error")
        self.metadata.setdefault(idempotency_key, dict(metadata or {}))
        existing = self.charges.get(idempotency_key)
        if existing is not None:  # as real gateways do: a key's first result is its answer, whatever the card
            return existing
        intent_id = intent_id or self._intent_of_key.get(idempotency_key)
        if intent_id is not None:
            return self._settle(intent_id, idempotency_key)
        if token == "tok_3ds":
            new_id = "pi_mock_" + secrets.token_hex(12)
            intent = MockIntent(id=new_id, client_secret=f"{new_id}_secret_{secrets.token_hex(12)}",
                                idempotency_key=idempotency_key, amount=amount, currency=currency,
                                created=int(time.time()))
            self.intents[intent.id] = intent
            self._intent_of_key[idempotency_key] = intent.id
            raise ChargeRequiresAction(intent.id, intent.client_secret)
        if token == "tok_declined":
            raise ChargeDeclined("card declined")
        if token not in ("tok_ok", "tok_slow"):
            raise ChargeDeclined("unknown payment token")
        charge = Charge(id="ch_" + secrets.token_hex(12), amount=amount, currency=currency)
        self.charges[idempotency_key] = charge
        self.created[charge.id] = int(time.time())
        return charge

    def _settle(self, intent_id: str, idempotency_key: str) -> Charge:
        intent = self.intents.get(intent_id)
        if intent is None or intent.idempotency_key != idempotency_key:
            raise ChargeDeclined("no such payment intent for this purchase")
        if intent.state == "requires_action":
            raise ChargeRequiresAction(intent.id, intent.client_secret)
        if intent.state == "failed":
            raise ChargeDeclined("authentication failed")
        if intent.state == "canceled":
            raise ChargeDeclined("the payment was cancelled")
        return self._charged(intent)

    def _charged(self, intent: MockIntent) -> Charge:
        """An authenticated intent has taken the money (as a PaymentIntent succeeds on its own)."""
        charge = Charge(id=intent.id, amount=intent.amount, currency=intent.currency)
        self.charges[intent.idempotency_key] = charge
        self.created.setdefault(intent.id, intent.created)
        return charge

    async def cancel(self, intent_id: str) -> None:
        await self._answer_delay("")
        intent = self.intents.get(intent_id)
        if intent is None:  # not one of this process's payments: nothing here can take money with it
            return
        if intent.state == "authenticated":
            raise AlreadyCharged(self._charged(intent))
        intent.state = "canceled"

    async def list_payments(self, *, created_from: int, created_to: int, after: str | None = None,
                            limit: int = 100) -> PaymentPage:
        await self._answer_delay("")
        for intent in self.intents.values():
            if intent.state == "authenticated":
                self._charged(intent)
        listed: list[GatewayPayment] = []
        for key, charge in self.charges.items():
            listed.append(GatewayPayment(id=charge.id, status="succeeded", amount=charge.amount,
                                         currency=charge.currency, amount_refunded=self.refunded.get(charge.id, 0),
                                         gateway_key=key, created=self.created.get(charge.id, 0)))
        charged = {c.id for c in self.charges.values()}
        for intent in self.intents.values():
            if intent.id not in charged:
                status = {"failed": "requires_payment_method"}.get(intent.state, intent.state)
                listed.append(GatewayPayment(id=intent.id, status=status, amount=intent.amount,
                                             currency=intent.currency, amount_refunded=0,
                                             gateway_key=intent.idempotency_key, created=intent.created))
        return page_of(listed, created_from=created_from, created_to=created_to, after=after, limit=limit)

    async def lookup(self, idempotency_key: str) -> Charge | None:
        await self._answer_delay("")
        intent_id = self._intent_of_key.get(idempotency_key)
        if intent_id is not None and self.intents[intent_id].state == "authenticated":
            return self._charged(self.intents[intent_id])
        return self.charges.get(idempotency_key)

    async def refund(self, charge: Charge, *, idempotency_key: str, amount: int | None = None) -> str:
        await self._answer_delay("")
        done = self.refund_keys.get(idempotency_key)
        if done is not None:
            return done
        left = charge.amount - self.refunded.get(charge.id, 0)
        if amount is None:
            if left <= 0 and charge.id in self.refunds:
                return self.refunds[charge.id]  # nothing left: refunding the whole charge again is a no-op
            amount = max(left, 0)
        elif amount <= 0 or amount > left:
            raise RefundRefused(f"cannot refund {amount} of charge {charge.id}: {left} left")
        refund_id = "re_" + secrets.token_hex(12)
        self.refunds.setdefault(charge.id, refund_id)
        self.refunded[charge.id] = self.refunded.get(charge.id, 0) + amount
        self.refund_keys[idempotency_key] = refund_id
        return refund_id

    async def aclose(self) -> None:
        return None


def page_of(listed: list[GatewayPayment], *, created_from: int, created_to: int, after: str | None,
            limit: int) -> PaymentPage:
    """A page of an in-memory ledger (the mock, test doubles): the payments in the range, by id order."""
    ordered = sorted((p for p in listed if created_from <= p.created <= created_to), key=lambda p: p.id)
    if after is not None:
        ordered = [p for p in ordered if p.id > after]
    page = ordered[:limit]
    return PaymentPage(payments=page, next=page[-1].id if len(ordered) > limit else None)
