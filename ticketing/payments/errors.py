"""Errors of charging and refunding through the payment gateway.

Each says what happened; stagedoor/problems.py maps the category to the status.
"""

from __future__ import annotations

from stagedoor.errors import BadGateway, BadRequest, NotFound, PaymentRequired, Unavailable


class PaymentDeclined(PaymentRequired):
    code = "payment-declined"
    title = "Payment declined"


class PaymentGatewayError(BadGateway):
    code = "payment-gateway-error"
    title = "The payment gateway failed"


class PaymentGatewayUnavailable(Unavailable):
    """The circuit breaker is open: fail fast instead of queueing on a sick gateway."""

    code = "payment-gateway-unavailable"
    title = "Payments are temporarily unavailable"


class WebhookSignatureInvalid(BadRequest):
    """A webhook without a valid ``Stripe-Signature`` for the configured secret (or too old)."""

    code = "webhook-signature-invalid"
    title = "Webhook signature missing, wrong or expired"


class WebhookPayloadInvalid(BadRequest):
    """A correctly signed webhook whose body is not an event stagedoor can read."""

    code = "webhook-payload-invalid"
    title = "Webhook body is not a readable event"


class WebhooksNotConfigured(NotFound):
    """No webhook secret is configured: this deployment receives no gateway webhooks (answered as a
    route that does not exist)."""
