"""Charging through the gateway with retries (tenacity) inside a circuit breaker (purgatory).

Why purgatory: it is asyncio-native (``async with breaker``); pybreaker's async path needs
Tornado and aiobreaker has not been released since 2021.

- Each attempt has a timeout (``payment_attempt_timeout_s``).
- ``GatewayFailure`` / timeout: retried ``payment_retry_attempts`` times in all, with
  exponential backoff plus jitter (``payment_retry_base_ms`` doubling, capped at
  ``payment_retry_max_ms``); then ``PaymentGatewayError`` (502).
- Every failed attempt counts towards the breaker; after ``payment_breaker_failures`` in a
  row it opens for ``payment_breaker_reset_s``: calls fail at once with
  ``PaymentGatewayUnavailable`` (503 + Retry-After) instead of waiting on a sick gateway.
- A decline is an answer, not a failure: never retried, never counted (402).
- So is a request for the fan's authentication (``ChargeRequiresAction``, 3-D Secure): it goes
  back to the caller untouched (the purchase answers 202 with the client secret), never
  retried, never counted; the charge with ``intent_id`` afterwards is an attempt like any other.
The gateway is idempotent per key, so a retry after a lost answer cannot charge twice.

Refunds, lookups and cancels go to the gateway that took the charge (``gateway=`` the name a charge
attempt or payments row records, ``mock`` or ``stripe``): the configured one, or, for charges taken
before a deployment switched gateways, the other one when it can still be reached
(ticketing/payments/configured.py ``other_gateway``). A charge of a gateway that cannot be reached
raises GatewayNotConfigured: never refunded or looked up through a gateway that did not take it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from stagedoor.settings import Settings
from ticketing.metrics import BREAKER_STATES, TicketingMetrics
from ticketing.payments.configured import gateway_from_settings, other_gateway
from ticketing.payments.errors import PaymentDeclined, PaymentGatewayError, PaymentGatewayUnavailable
from ticketing.payments.gateway import (
    Charge,
    ChargeDeclined,
    ChargeRequiresAction,
    GatewayFailure,
    PaymentGateway,
    PaymentPage,
    RefundRefused,
)

logger = logging.getLogger(__name__)

CIRCUIT = "payment-gateway"


class GatewayNotConfigured(Exception):
    """A charge taken by a gateway this deployment cannot reach any more (switched away from it, and
    its credentials are gone): it is refunded or settled by no other gateway."""

    def __init__(self, gateway: str) -> None:
        super().__init__(f"the charge was taken by the {gateway!r} gateway, which is not configured here")
        self.gateway = gateway


class _AttemptFailed(Exception):
    """One failed attempt (gateway error or timeout), as seen by the retry loop."""


@dataclass(frozen=True)
class _ChargeCall:
    """What each attempt of one charge sends (the same every time: same key, same payment)."""

    amount: int
    currency: str
    token: str
    idempotency_key: str
    metadata: Mapping[str, str] | None
    intent_id: str | None

    async def send(self, gateway: PaymentGateway) -> Charge:
        return await gateway.charge(amount=self.amount, currency=self.currency, token=self.token,
                                    idempotency_key=self.idempotency_key, metadata=self.metadata,
                                    intent_id=self.intent_id)


class Payments:
    def __init__(self, gateway: PaymentGateway, metrics: TicketingMetrics, *, attempts: int = 3,
                 retry_base_ms: int = 50, retry_max_ms: int = 1_000, attempt_timeout_s: float = 10.0,
                 breaker_failures: int = 5, breaker_reset_s: float = 30.0, gateway_name: str = "mock",
                 other_gateway: Callable[[str], PaymentGateway | None] | None = None) -> None:
        self.gateway = gateway
        self.gateway_name = gateway_name  # what payments rows of its charges record (payments.gateway)
        self._other_gateway = other_gateway
        self._others: dict[str, PaymentGateway] = {}
        self.metrics = metrics
        self.attempts = attempts
        self.retry_base_s = retry_base_ms / 1000
        self.retry_max_s = retry_max_ms / 1000
        self.attempt_timeout_s = attempt_timeout_s
        self.breaker_reset_s = breaker_reset_s
        # A decline or a request for 3-D Secure is the gateway answering, not failing: neither may
        # count toward opening the breaker (five declined cards in a row would otherwise stop
        # everyone's payments).
        self._breakers = AsyncCircuitBreakerFactory(default_threshold=breaker_failures, default_ttl=breaker_reset_s,
                                                    exclude=[ChargeDeclined, ChargeRequiresAction])
        self._breakers.add_listener(self._on_breaker_event)
        metrics.payment_breaker_state.set(0)

    @classmethod
    def from_settings(cls, settings: Settings, metrics: TicketingMetrics,
                      gateway: PaymentGateway | None = None) -> Payments:
        gateway = gateway or gateway_from_settings(settings)
        return cls(gateway, metrics, attempts=settings.payment_retry_attempts,
                   retry_base_ms=settings.payment_retry_base_ms, retry_max_ms=settings.payment_retry_max_ms,
                   attempt_timeout_s=settings.payment_attempt_timeout_s,
                   breaker_failures=settings.payment_breaker_failures,
                   breaker_reset_s=settings.payment_breaker_reset_s, gateway_name=settings.payment_gateway,
                   other_gateway=lambda name: other_gateway(settings, name))

    def gateway_of(self, name: str | None) -> PaymentGateway:
        """The gateway that took a charge recorded under ``name`` (None: the configured one); raises
        GatewayNotConfigured when this deployment cannot reach it."""
        if name is None or name == self.gateway_name:
            return self.gateway
        gateway = self._others.get(name)
        if gateway is None:
            gateway = self._other_gateway(name) if self._other_gateway is not None else None
            if gateway is None:
                self.metrics.payment_gateway_missing_total.labels(name).inc()
                logger.error("payment_gateway_not_configured", extra={"gateway": name,
                                                                      "configured": self.gateway_name})
                raise GatewayNotConfigured(name)
            self._others[name] = gateway
        return gateway

    async def aclose(self) -> None:
        """Close the gateways built for earlier charges (the configured one belongs to gateway_ctx)."""
        others, self._others = self._others, {}
        for gateway in others.values():
            await gateway.aclose()

    def _on_breaker_event(self, name: str, event_name: str, event: object) -> None:
        if event_name == "state_changed":
            state = str(getattr(event, "state", "closed"))
            self.metrics.payment_breaker_state.set(BREAKER_STATES.get(state, 0))
            logger.warning("payment_breaker_state", extra={"state": state})

    async def breaker_state(self) -> str:
        breaker = await self._breakers.get_breaker(CIRCUIT)
        return breaker.context.state

    async def _attempt(self, call: _ChargeCall) -> Charge:
        breaker = await self._breakers.get_breaker(CIRCUIT)
        try:
            async with breaker:
                try:
                    async with asyncio.timeout(self.attempt_timeout_s):
                        charge = await call.send(self.gateway)
                except ChargeDeclined:
                    # An answer, not a failure: leave the breaker's count alone.
                    self.metrics.payment_attempts_total.labels("declined").inc()
                    raise
                except ChargeRequiresAction:
                    self.metrics.payment_attempts_total.labels("requires_action").inc()
                    raise
                except (GatewayFailure, TimeoutError) as exc:
                    self.metrics.payment_attempts_total.labels("error").inc()
                    logger.warning("payment_attempt_failed", extra={"error": type(exc).__name__})
                    raise _AttemptFailed(str(exc) or type(exc).__name__) from exc
        except (ChargeDeclined, ChargeRequiresAction):
            raise
        except OpenedState as exc:
            self.metrics.payment_attempts_total.labels("breaker_open").inc()
            retry_after = max(1, math.ceil(exc.opened_at + self.breaker_reset_s - time.time()))
            raise PaymentGatewayUnavailable("the payment gateway is failing; retry later",
                                            retry_after_s=retry_after) from None
        self.metrics.payment_attempts_total.labels("ok").inc()
        return charge

    async def charge(self, *, amount: int, currency: str, token: str, idempotency_key: str,
                     metadata: Mapping[str, str] | None = None, intent_id: str | None = None) -> Charge:
        """Charge once (per key); raises PaymentDeclined, PaymentGatewayError, PaymentGatewayUnavailable,
        and lets the gateway's ChargeRequiresAction through as it came (the fan must authenticate;
        charge again with its ``intent_id`` afterwards). ``metadata`` goes with the payment."""
        call = _ChargeCall(amount=amount, currency=currency, token=token, idempotency_key=idempotency_key,
                           metadata=metadata, intent_id=intent_id)
        start = time.perf_counter()
        outcome = "error"
        try:
            try:  # the first attempt alone: the usual purchase pays for no retry machinery
                charge = await self._attempt(call)
            except _AttemptFailed:
                if self.attempts <= 1:
                    raise
                charge = await self._retry(call)
            outcome = "ok"
            return charge
        except ChargeRequiresAction:
            outcome = "requires_action"
            raise
        except ChargeDeclined as exc:
            outcome = "declined"
            raise PaymentDeclined(f"payment declined: {exc.reason}") from None
        except PaymentGatewayUnavailable:
            outcome = "breaker_open"
            raise
        except _AttemptFailed as exc:
            raise PaymentGatewayError(f"payment gateway failed after {self.attempts} attempt(s)") from exc
        finally:
            self.metrics.payment_latency_seconds.labels(outcome).observe(time.perf_counter() - start)

    async def _retry(self, call: _ChargeCall) -> Charge:
        """Attempts 2..N after a failed first one, by tenacity: backoff base, 2 base, 4 base...
        (capped) plus up to base of jitter, the same curve as one loop over every attempt."""
        await asyncio.sleep(min(self.retry_max_s, self.retry_base_s + random.uniform(0, self.retry_base_s)))
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.attempts - 1),
            wait=wait_exponential_jitter(multiplier=2 * self.retry_base_s, max=self.retry_max_s,
                                         jitter=self.retry_base_s),
            retry=retry_if_exception_type(_AttemptFailed),
            reraise=True,
        ):
            with attempt:
                return await self._attempt(call)
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover

    async def lookup(self, idempotency_key: str, *, gateway: str | None = None) -> Charge | None:
        """The charge this key made, None if none; GatewayFailure/TimeoutError when the gateway does not
        say, GatewayNotConfigured when the gateway that charged cannot be reached."""
        target = self.gateway_of(gateway)
        async with asyncio.timeout(self.attempt_timeout_s):
            return await target.lookup(idempotency_key)

    async def cancel(self, intent_id: str, *, gateway: str | None = None) -> None:
        """Cancel a payment waiting for the fan; AlreadyCharged when it succeeded meanwhile,
        GatewayFailure/TimeoutError when the gateway does not say, GatewayNotConfigured."""
        target = self.gateway_of(gateway)
        async with asyncio.timeout(self.attempt_timeout_s):
            await target.cancel(intent_id)

    async def list_payments(self, *, created_from: int, created_to: int, after: str | None = None,
                            limit: int = 100) -> PaymentPage:
        """One page of the configured gateway's payments (PaymentGateway.list_payments), within the
        attempt timeout."""
        async with asyncio.timeout(self.attempt_timeout_s):
            return await self.gateway.list_payments(created_from=created_from, created_to=created_to, after=after,
                                                    limit=limit)

    async def refund(self, charge: Charge, *, idempotency_key: str, amount: int | None = None,
                     gateway: str | None = None) -> str | None:
        """Refund ``amount`` (None: all that is left) through the gateway that took the charge
        (``gateway``, as its payments row records it; None: the configured one), best effort with
        retries; None (logged) when the gateway will not answer, or cannot be reached at all
        (GatewayNotConfigured: counted and logged, never sent to another gateway). Raises only
        RefundRefused: an amount the charge cannot give back (more than is left), which no retry changes."""
        try:
            target = self.gateway_of(gateway)
        except GatewayNotConfigured:
            logger.error("refund_failed", extra={"charge_id": charge.id, "gateway": gateway,
                                                 "reason": "gateway_not_configured"})
            return None
        for attempt in range(self.attempts):
            try:
                async with asyncio.timeout(self.attempt_timeout_s):
                    return await target.refund(charge, idempotency_key=idempotency_key, amount=amount)
            except RefundRefused:
                logger.error("refund_refused", extra={"charge_id": charge.id, "amount": amount})
                raise
            except (GatewayFailure, TimeoutError):
                await asyncio.sleep(min(self.retry_max_s, self.retry_base_s * 2 ** attempt))
        logger.error("refund_failed", extra={"charge_id": charge.id})
        return None
