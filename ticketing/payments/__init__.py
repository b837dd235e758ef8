"""Payments: the gateway interface, charging with retries and a circuit breaker, refunds."""
