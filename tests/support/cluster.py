"""Redis Cluster test helpers: the body of a seated event of a given size."""

from __future__ import annotations

from typing import Any


def seat_map(seats: int, per_row: int = 10) -> dict[str, Any]:
    """One section of ``seats`` seats, ``per_row`` a row, all of tier A."""
    rows = [{"label": f"R{r + 1}", "seats": [{"number": str(k + 1), "tier": "A"}
                                             for k in range(min(per_row, seats - r * per_row))]}
            for r in range((seats + per_row - 1) // per_row)]
    return {"sections": [{"name": "S1", "rows": rows}]}


def event_body(seats: int) -> dict[str, Any]:
    """A seated event of ``seats`` seats at one price, 4 tickets per order at most."""
    return {"title": "Cluster concert", "category": "concert", "currency": "EUR",
            "venue": {"name": "Cluster Hall", "city": "Shardville", "address": "1 Slot St"},
            "starts_at": "2030-06-01T19:00:00Z", "ends_at": "2030-06-01T22:00:00Z",
            "tiers": [{"code": "A", "name": "Stalls", "price": 2500}], "seat_map": seat_map(seats),
            "max_tickets_per_order": 4}
