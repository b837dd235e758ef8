"""Formats shared by the services' JSON: RFC 3339 timestamps, UUIDs from request paths."""

from __future__ import annotations

import datetime as dt
import uuid


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_uuid(raw: str, not_found: type[Exception]) -> str:
    """The canonical form of a UUID from a path; ``not_found`` (a 404) when it is none."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise not_found(f"no such id {raw[:60]!r}") from None
