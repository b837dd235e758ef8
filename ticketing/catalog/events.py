"""Catalog domain: create, update, cancel, read and search events (handler -> here -> stores).

Who may change an event: its organizer or an admin (stagedoor/policy.py decides; the route has
already refused callers who may change no event at all). A draft is hidden from everybody who
may not read it, so changing another organizer's draft answers 404 like a missing event; an
event on sale is public, so changing someone else's answers 403. Going on sale loads the event's
holdable state into Redis (ticketing/catalog/inventory.py); cancelling marks it cancelled in
PostgreSQL with an EventCancelled outbox row in the same transaction (refunds and
notifications follow from that row), then refuses new holds in Redis and closes the event's
waiting room (rooms.sessions.close_cancelled_event; the worker's ``admission`` bus group closes
it too from the row, should this process fail before).
"""

from __future__ import annotations

import logging
from typing import Any, cast

import msgspec

from stagedoor.auth import Principal
from stagedoor.logs import log_failure
from stagedoor.policy import Action, Resource, authorize, is_allowed
from ticketing.catalog.errors import InvalidEvent, InvalidStatusChange, NotEventOwner
from ticketing.catalog.inventory import Inventory
from ticketing.catalog.store import EventRow, NewEvent, TierRow
from ticketing.catalog.types import (
    MAX_SEATS_PER_EVENT,
    EventCreate,
    EventOut,
    EventPage,
    EventPatch,
    EventSearch,
    EventSummary,
    SeatMapOut,
    SeatOut,
    SeatState,
    TierOut,
    VenueOut,
)
from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.holds.types import TierCount
from ticketing.ids import EventNotFound, outbox_id

logger = logging.getLogger(__name__)

ALLOWED_STATUS_CHANGES = {("draft", "on_sale"), ("on_sale", "sold_out"), ("sold_out", "on_sale")}


def _check_definition(body: EventCreate) -> list[tuple[str, str, str, str]]:
    """Cross-field rules; returns the flattened seats (section, row, number, tier)."""
    problems: list[dict[str, str]] = []

    def bad(field: str, message: str) -> None:
        if len(problems) < 20:
            problems.append({"field": field, "message": message})

    if body.ends_at < body.starts_at:
        bad("$.ends_at", "ends before it starts")
    codes = [t.code for t in body.tiers]
    if len(set(codes)) != len(codes):
        bad("$.tiers", "tier codes must be unique")
    ga = {t.code for t in body.tiers if t.quantity is not None}
    seated = {t.code for t in body.tiers if t.quantity is None}
    seats: list[tuple[str, str, str, str]] = []
    if body.seat_map is None:
        for i, t in enumerate(body.tiers):
            if t.quantity is None:
                bad(f"$.tiers[{i}].quantity", "general admission (no seat_map) needs a quantity per tier")
    else:
        used: set[str] = set()
        section_names: set[str] = set()
        for si, section in enumerate(body.seat_map.sections):
            if section.name in section_names:
                bad(f"$.seat_map.sections[{si}].name", "duplicate section name")
            section_names.add(section.name)
            labels: set[str] = set()
            for ri, row in enumerate(section.rows):
                if row.label in labels:
                    bad(f"$.seat_map.sections[{si}].rows[{ri}].label", "duplicate row label")
                labels.add(row.label)
                numbers: set[str] = set()
                for ni, seat in enumerate(row.seats):
                    where = f"$.seat_map.sections[{si}].rows[{ri}].seats[{ni}]"
                    if seat.number in numbers:
                        bad(where + ".number", "duplicate seat number in row")
                    numbers.add(seat.number)
                    if seat.tier not in seated:
                        bad(where + ".tier", "unknown tier, or a general-admission tier (has a quantity)")
                    used.add(seat.tier)
                    seats.append((section.name, row.label, seat.number, seat.tier))
                    if len(seats) > MAX_SEATS_PER_EVENT:
                        raise InvalidEvent(f"at most {MAX_SEATS_PER_EVENT} seats per event",
                                           errors=[{"field": "$.seat_map", "message": "too many seats"}])
        for i, t in enumerate(body.tiers):
            if t.quantity is None and t.code not in used:
                bad(f"$.tiers[{i}]", "a seated tier (no quantity) must be used by at least one seat")
    if problems:
        raise InvalidEvent(problems[0]["message"] if len(problems) == 1 else f"{len(problems)} problems",
                           errors=problems)
    del ga
    return seats


async def create_event(inventory: Inventory, principal: Principal, body: EventCreate) -> EventRow:
    # A user creates for themself; an organizer's API client (scope events:write) for its owner;
    # admins for any organizer.
    organizer_id = body.organizer_id or principal.user_id
    authorize(principal, Action.EVENT_CREATE, Resource(organizer_id=organizer_id),
              hidden=NotEventOwner("only admins may create events for another organizer"))
    if organizer_id is None:
        raise InvalidEvent("organizer_id is required when creating an event with the admin key or an ownerless "
                           "admin client",
                           errors=[{"field": "$.organizer_id", "message": "required"}])
    seats = _check_definition(body)
    new = NewEvent(
        organizer_id=organizer_id, status="draft" if body.draft else "on_sale", title=body.title,
        description=body.description, category=body.category, venue_name=body.venue.name,
        venue_city=body.venue.city, venue_address=body.venue.address, starts_at=body.starts_at,
        ends_at=body.ends_at, currency=body.currency, max_tickets_per_order=body.max_tickets_per_order,
        hold_ttl_s=body.hold_ttl_s,
        tiers=tuple(TierRow(code=t.code, name=t.name, price=t.price, quantity=t.quantity) for t in body.tiers),
        seats=seats,
    )
    try:
        event_id = await inventory.events.create(new)
    except Exception as exc:
        if type(exc).__name__ == "ForeignKeyViolationError":
            raise InvalidEvent("organizer_id is not a user",
                               errors=[{"field": "$.organizer_id", "message": "unknown user"}]) from exc
        raise
    logger.info("event_created", extra={"event_id": event_id, "seats": len(seats), "status": new.status})
    if new.status == "on_sale":
        await inventory.load_event(event_id)
    return await _must_get(inventory, event_id)


async def _must_get(inventory: Inventory, event_id: int) -> EventRow:
    event = await inventory.events.get(event_id)
    if event is None:
        raise EventNotFound(f"no event {event_id}")
    return event


def _check_owner(principal: Principal, event: EventRow, action: Action) -> None:
    """403 for someone else's public event; 404 (as for a missing one) for a draft they may not see."""
    hidden = None if _visible(event, principal) else EventNotFound(f"no event {event.id}")
    authorize(principal, action, Resource(organizer_id=event.organizer_id),
              hidden=hidden or NotEventOwner("only the event's organizer or an admin may change it"))


async def update_event(inventory: Inventory, principal: Principal, event_id: int, patch: EventPatch) -> EventRow:
    event = await _must_get(inventory, event_id)
    _check_owner(principal, event, Action.EVENT_UPDATE)
    if event.status == "cancelled":
        raise InvalidStatusChange("a cancelled event cannot be changed")
    fields: dict[str, Any] = {name: value for name in ("title", "description", "category", "starts_at", "ends_at",
                                                       "max_tickets_per_order", "hold_ttl_s")
                              if (value := getattr(patch, name)) is not msgspec.UNSET}
    starts = fields.get("starts_at", event.starts_at)
    ends = fields.get("ends_at", event.ends_at)
    if ends < starts:
        raise InvalidEvent("ends before it starts", errors=[{"field": "$.ends_at", "message": "before starts_at"}])
    status = None if patch.status is msgspec.UNSET else patch.status
    if status == event.status:
        status = None
    if status is not None and (event.status, status) not in ALLOWED_STATUS_CHANGES:
        raise InvalidStatusChange(f"cannot change status from {event.status} to {status}")
    venue = None
    if patch.venue is not msgspec.UNSET:
        venue = (patch.venue.name, patch.venue.city, patch.venue.address)
    if fields or venue or status:
        await inventory.events.update(event_id, fields, venue, status)
    updated = await _must_get(inventory, event_id)
    if status == "on_sale" and event.status == "draft":
        await inventory.load_event(event_id)
    else:
        meta: dict[str, str | int] = {}
        if status is not None:
            meta["status"] = status
        if "max_tickets_per_order" in fields:
            meta["max_per_order"] = updated.max_tickets_per_order
        if "hold_ttl_s" in fields:
            meta["hold_ttl_ms"] = (updated.hold_ttl_s or inventory.settings.hold_ttl_s) * 1000
        if meta:
            await inventory.holds.update_meta(str(event_id), meta)
    logger.info("event_updated", extra={"event_id": event_id, "fields": sorted(fields), "status": status})
    return updated


async def cancel_event(inventory: Inventory, principal: Principal, event_id: int, now_ms: int,
                       admission: AdmissionHooks | None = None) -> EventRow:
    """Cancel the event; a repeated cancel changes nothing in PostgreSQL and closes the room
    again (idempotent), in case the first one's Redis writes failed."""
    event = await _must_get(inventory, event_id)
    _check_owner(principal, event, Action.EVENT_CANCEL)
    payload = {"event_id": str(event_id), "title": event.title, "starts_at": event.starts_at.isoformat(),
               "cancelled_by": principal.id, "cancelled_at_ms": now_ms}
    cancelled = await inventory.events.cancel(event_id, outbox_id("EventCancelled", str(event_id)), payload)
    if cancelled:
        await inventory.holds.update_meta(str(event_id), {"status": "cancelled"})
        logger.info("event_cancelled", extra={"event_id": event_id})
    event = await _must_get(inventory, event_id)
    if admission is not None and event.status == "cancelled":
        try:  # the waiting room's fans see "closed" within its room pulse; admission stops
            room = await admission.close_cancelled_event(str(event_id), now_ms)
        except Exception as exc:  # committed: the worker's admission bus group closes the room
            log_failure(logger, "cancelled_room_close_failed", exc, event_id=event_id)
        else:
            if room is not None and cancelled:
                logger.info("cancelled_event_room_closed", extra={"event_id": event_id, "room": room})
    return event


def _tier_out(event: EventRow, counts: dict[str, TierCount] | None) -> list[TierOut]:
    out = []
    for t in event.tiers:
        capacity = t.quantity if t.quantity is not None else event.seat_counts.get(t.code, 0)
        live = counts.get(t.code) if counts else None
        if live is not None:
            available, sold = live.free, live.sold
        else:
            available, sold = (capacity if event.status == "draft" else 0), 0
        if event.status == "cancelled":
            available = 0
        out.append(TierOut(code=t.code, name=t.name, price=t.price, quantity=t.quantity, capacity=capacity,
                           available=available, sold=sold))
    return out


def event_out(event: EventRow, counts: dict[str, TierCount] | None) -> EventOut:
    return EventOut(
        id=str(event.id), status=event.status, title=event.title, description=event.description,
        category=event.category,
        venue=VenueOut(name=event.venue_name, city=event.venue_city, address=event.venue_address),
        starts_at=event.starts_at, ends_at=event.ends_at, currency=event.currency,
        max_tickets_per_order=event.max_tickets_per_order, hold_ttl_s=event.hold_ttl_s, seated=event.seated,
        organizer_id=event.organizer_id, tiers=_tier_out(event, counts), created_at=event.created_at,
    )


def _visible(event: EventRow, principal: Principal | None) -> bool:
    if event.status != "draft":
        return True
    return principal is not None and is_allowed(principal, Action.EVENT_READ, Resource(organizer_id=event.organizer_id))


async def get_event(inventory: Inventory, event_id: int, principal: Principal | None) -> EventOut:
    event = await inventory.events.get(event_id)
    if event is None or not _visible(event, principal):
        raise EventNotFound(f"no event {event_id}")
    counts = None
    if event.status in ("on_sale", "sold_out"):
        await inventory.ensure_loaded(str(event_id))
        counts = await inventory.holds.tier_counts(str(event_id))
    return event_out(event, counts)


async def get_seat_map(inventory: Inventory, event_id: int, principal: Principal | None, now_ms: int) -> SeatMapOut:
    ev = str(event_id)
    version = inventory.holds.version(ev)  # before any Redis read: see ticketing/catalog/seat_map_cache.py
    cached = inventory.seat_maps.get(event_id, version, now_ms)
    if cached is not None:  # only maps of events on sale or sold out are kept: public, no query needed
        return cached
    event = await inventory.events.get(event_id)
    if event is None or not _visible(event, principal):
        raise EventNotFound(f"no event {event_id}")
    rows = await inventory.events.seats(event_id)
    states: dict[str, SeatState] | None = None
    earliest_expiry: int | None = None
    if event.status in ("on_sale", "sold_out"):
        await inventory.ensure_loaded(ev)
        version = inventory.holds.version(ev)  # a reload is a write too
        seat_states, earliest_expiry = await inventory.holds.seat_states(ev, now_ms)
        states = cast(dict[str, SeatState] | None, seat_states)  # each "free", "held" or "sold"
    default: SeatState = "free" if event.status == "draft" else "sold"
    out = SeatMapOut(event_id=ev, seats=[
        SeatOut(id=r["id"], section=r["section"], row=r["row_label"], number=r["number"], tier=r["tier_code"],
                state=(states.get(r["id"], default) if states is not None else default))
        for r in rows
    ])
    if states is not None:
        inventory.seat_maps.put(event_id, version, now_ms, earliest_expiry, out)
    return out


async def search_events(inventory: Inventory, query: EventSearch) -> EventPage:
    rows, next_cursor = await inventory.events.search(query)
    return EventPage(items=[EventSummary(
        id=str(r["id"]), status=r["status"], title=r["title"], category=r["category"], city=r["city"],
        venue=r["venue"], starts_at=r["starts_at"], ends_at=r["ends_at"], currency=r["currency"],
        min_price=r["min_price"], max_price=r["max_price"]) for r in rows], next_cursor=next_cursor)
