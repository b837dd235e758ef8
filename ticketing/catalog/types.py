"""Catalog request and response types (msgspec), with an explicit bound on every field and list.

Decoding enforces shapes and bounds (422 on violation, unknown fields included); the
cross-field rules (tier codes unique, seats reference seated tiers, ...) live in
``ticketing/catalog/events.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

MAX_SEATS_PER_EVENT = 200_000
MAX_TIERS = 20
MAX_TICKETS_PER_ORDER = 50

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Text = Annotated[str, msgspec.Meta(max_length=10_000)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=r"^[\w &/-]+$")]
Name100 = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
TierCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Price = Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
PerOrder = Annotated[int, msgspec.Meta(ge=1, le=MAX_TICKETS_PER_ORDER)]
HoldTtl = Annotated[int, msgspec.Meta(ge=5, le=3600)]


class Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class VenueIn(Struct, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    city: Name100
    address: Annotated[str, msgspec.Meta(max_length=300)] = ""


class TierIn(Struct, kw_only=True):
    code: TierCode
    name: Name100
    price: Price
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None  # general admission


class SeatIn(Struct, kw_only=True):
    number: Annotated[str, msgspec.Meta(min_length=1, max_length=10)]
    tier: TierCode


class RowIn(Struct, kw_only=True):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=10)]
    seats: Annotated[list[SeatIn], msgspec.Meta(min_length=1, max_length=2_000)]


class SectionIn(Struct, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    rows: Annotated[list[RowIn], msgspec.Meta(min_length=1, max_length=1_000)]


class SeatMapIn(Struct, kw_only=True):
    sections: Annotated[list[SectionIn], msgspec.Meta(min_length=1, max_length=200)]


class EventCreate(Struct, kw_only=True):
    title: Title
    description: Text = ""
    category: Category
    venue: VenueIn
    starts_at: Instant
    ends_at: Instant
    currency: Currency
    tiers: Annotated[list[TierIn], msgspec.Meta(min_length=1, max_length=MAX_TIERS)]
    seat_map: SeatMapIn | None = None
    max_tickets_per_order: PerOrder = 10
    hold_ttl_s: HoldTtl | None = None
    draft: bool = False  # true: created as a draft; PATCH {"status": "on_sale"} opens the sale
    # Admins only (required with the admin API key): the organizer account that owns the event.
    organizer_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F-]{36}$")] | None = None


class EventPatch(Struct, kw_only=True):
    title: Title | msgspec.UnsetType = msgspec.UNSET
    description: Text | msgspec.UnsetType = msgspec.UNSET
    category: Category | msgspec.UnsetType = msgspec.UNSET
    venue: VenueIn | msgspec.UnsetType = msgspec.UNSET
    starts_at: Instant | msgspec.UnsetType = msgspec.UNSET
    ends_at: Instant | msgspec.UnsetType = msgspec.UNSET
    max_tickets_per_order: PerOrder | msgspec.UnsetType = msgspec.UNSET
    hold_ttl_s: HoldTtl | msgspec.UnsetType | None = msgspec.UNSET
    status: Literal["on_sale", "sold_out"] | msgspec.UnsetType = msgspec.UNSET


class EventSearch(Struct, kw_only=True):
    q: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    category: Category | None = None
    city: Name100 | None = None
    from_: Instant | None = msgspec.field(default=None, name="from")
    to: Instant | None = None
    min_price: Price | None = None
    max_price: Price | None = None
    available: Annotated[bool | None, msgspec.Meta(description=(
        "true: only events on sale with tickets not yet sold; false: only sold-out events (status sold_out "
        "or nothing left). From the search read model (tickets sold per tier, kept by the event bus), not "
        "the live inventory: seats held in someone's basket still count as available, and a purchase counts "
        "once the worker's read-model consumer has applied it. Omitted: both."))] = None
    sort: Literal["starts_at", "-starts_at", "price", "-price"] = "starts_at"
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None


# ---------------------------------------------------------------- responses
class VenueOut(msgspec.Struct, kw_only=True):
    name: str
    city: str
    address: str


class TierOut(msgspec.Struct, kw_only=True):
    code: str
    name: str
    price: int
    quantity: int | None
    capacity: int
    available: int
    sold: int


class EventOut(msgspec.Struct, kw_only=True):
    id: str
    status: str
    title: str
    description: str
    category: str
    venue: VenueOut
    starts_at: datetime
    ends_at: datetime
    currency: str
    max_tickets_per_order: int
    hold_ttl_s: int | None
    seated: bool
    organizer_id: str
    tiers: list[TierOut]
    created_at: datetime


class EventSummary(msgspec.Struct, kw_only=True):
    id: str
    status: str
    title: str
    category: str
    city: str
    venue: str
    starts_at: datetime
    ends_at: datetime
    currency: str
    min_price: int
    max_price: int


class EventPage(msgspec.Struct, kw_only=True):
    items: list[EventSummary]
    next_cursor: str | None


SeatState = Literal["free", "held", "sold"]


class SeatOut(msgspec.Struct, kw_only=True):
    id: str
    section: str
    row: str
    number: str
    tier: str
    state: SeatState


class SeatMapOut(msgspec.Struct, kw_only=True):
    event_id: str
    seats: list[SeatOut]


class EventCreated(msgspec.Struct, kw_only=True):
    id: str
    status: str
    seats: int
