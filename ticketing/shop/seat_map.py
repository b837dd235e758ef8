"""The seat-map layout of the event page: sections stacked vertically, rows as lines, seats in
the order the API lists them, drawn as SVG on the server (usable without JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_DRAWN_SEATS = 5_000  # beyond this the event page offers per-tier quantities instead of a map
SEAT_PX = 22
SECTION_GAP_PX = 34
LABEL_PX = 40
TIER_COLOURS = ("#1f6fb2", "#b2461f", "#2e7d32", "#7b3fa0", "#a07800", "#00796b", "#c2185b", "#5d4037")


@dataclass(frozen=True, slots=True)
class DrawnSeat:
    id: str
    x: int
    y: int
    label: str
    tier: str
    state: str
    colour: str


@dataclass(frozen=True, slots=True)
class SeatMapLayout:
    seats: list[DrawnSeat]
    labels: list[tuple[int, int, str]]  # x, y, text (sections and rows)
    width: int
    height: int


def tier_colours(tier_codes: list[str]) -> dict[str, str]:
    return {code: TIER_COLOURS[i % len(TIER_COLOURS)] for i, code in enumerate(tier_codes)}


def layout_seat_map(seats: list[Any], colours: dict[str, str]) -> SeatMapLayout | None:
    """Sections stacked vertically, rows as lines, seats in the order the API lists them.
    None when there is nothing to draw or too much (see MAX_DRAWN_SEATS)."""
    if not seats or len(seats) > MAX_DRAWN_SEATS:
        return None
    sections: dict[str, dict[str, list[Any]]] = {}
    for seat in seats:
        sections.setdefault(seat.section, {}).setdefault(seat.row, []).append(seat)
    drawn: list[DrawnSeat] = []
    labels: list[tuple[int, int, str]] = []
    y = 0
    width = 0
    for section, rows in sections.items():
        y += 18
        labels.append((0, y, section))
        y += 8
        for row, row_seats in rows.items():
            labels.append((0, y + 15, row))
            for i, seat in enumerate(row_seats):
                x = LABEL_PX + i * SEAT_PX
                drawn.append(DrawnSeat(id=seat.id, x=x, y=y, tier=seat.tier, state=seat.state,
                                       colour=colours.get(seat.tier, "#555"),
                                       label=f"{section}, row {row}, seat {seat.number}"))
                width = max(width, x + SEAT_PX)
            y += SEAT_PX
        y += SECTION_GAP_PX - 18
    return SeatMapLayout(seats=drawn, labels=labels, width=max(width, 200), height=y + 4)
