"""Identifiers every ticketing package uses: event ids from request paths (a malformed one names no
event: 404) and the deterministic ids of outbox rows (a retried write of the same fact is a no-op)."""

from __future__ import annotations

import re
import uuid

from stagedoor.errors import NotFound

EVENT_ID_RE = re.compile(r"^[1-9][0-9]{0,17}$")
OUTBOX_NS = uuid.UUID("6f1e8a52-3c1b-4c4e-9d0e-5b2b7f0c9a11")

class EventNotFound(NotFound):
    code = "event-not-found"
    title = "No such event"


def parse_event_id(raw: str) -> int:
    if not EVENT_ID_RE.match(raw):
        raise EventNotFound(f"no event {raw[:40]!r}")
    return int(raw)


def outbox_id(kind: str, key: str) -> str:
    """Deterministic outbox event ids: a retried write of the same fact is a no-op."""
    return str(uuid.uuid5(OUTBOX_NS, f"{kind}:{key}"))
