"""The envelope every event on the bus travels in (the contract between the outbox relay,
the stream consumers and their handlers).

An outbox row becomes one Redis Stream entry; a consumer decodes it into an ``Envelope`` and
hands it to a handler. Delivery is at-least-once: handlers must be idempotent by ``event_id``.
``payload`` is the event type's versioned body (see the event types beside the relay).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str  # uuid of the outbox row: the idempotency key of every consumer
    event_type: str  # e.g. "OrderConfirmed"
    event_version: int  # payload schema version of that type
    aggregate_id: str  # e.g. the order id, the event id, the hold id
    payload: dict[str, Any]
    created_at_ms: int  # when the state change committed (outbox created_at)


Handler = Callable[[Envelope], Awaitable[None]]
"""Handles one delivery. Returning acknowledges it; raising leaves it pending for a retry
(after ``max_attempts`` failures the entry goes to the dead-letter stream)."""
