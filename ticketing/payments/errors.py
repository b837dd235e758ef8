"""Errors of charging and refunding through the payment gateway.

Each says what happened; stagedoor/problems.py maps the category to the status.
"""

from __future__ import annotations

from stagedoor.errors import BadGateway, PaymentRequired, Unavailable


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
