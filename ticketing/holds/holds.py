"""Seat holds: the domain types and operations (handler -> here -> HoldStore -> Redis).

A hold reserves seats (or N general-admission tickets of one tier) for one user for a
short time. All or nothing; at most one live hold per user per event; an expired hold
counts as free without any cron (the Lua scripts compare expiry with ``now_ms``), and
the sweeper later reclaims it and announces BookingExpired.

The invariant "a seat is never in two live holds" is enforced by the ``hold_seats``
script, which checks every seat before its first write, inside one Redis EVAL.

On a gated event an admission is one fan's: the hold scripts bind the admission token's ``jti``
to the first user who holds with it (every other user: AdmissionInUse, 403) and cap the tickets
held plus bought through it at the event's max_tickets_per_order (AdmissionLimitReached, 422).
"""

from __future__ import annotations

import re
from typing import Protocol

from stagedoor.admission_tokens import AdmissionClaims, AdmissionRequired
from stagedoor.auth import Principal
from stagedoor.policy import Action, Resource, authorize
from ticketing.holds.errors import (
    AdmissionNeeded,
    InvalidHoldRequest,
    InventoryNotLoaded,
    NotHoldOwner,
    OverOrderLimit,
)
from ticketing.holds.store import HoldStore
from ticketing.holds.types import Hold, new_hold_id


class InventoryLoader(Protocol):
    """What placing a hold needs of the inventory (ticketing.catalog.inventory.Inventory): its hold
    store, and a rebuild of an event's holdable state from PostgreSQL when Redis lost it."""

    @property
    def holds(self) -> HoldStore: ...

    async def ensure_loaded(self, event_id: str) -> None: ...

# Limits on what a request may name (the per-event max_tickets_per_order is checked too).
MAX_SEATS_PER_REQUEST = 50
SEAT_ID_RE = re.compile(r"^s[1-9][0-9]{0,6}$")
TIER_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def validate_seat_request(seat_ids: list[str]) -> list[str]:
    """Shape checks before touching Redis: ids well formed, no duplicates, bounded."""
    if not seat_ids:
        raise InvalidHoldRequest("name at least one seat", errors=[{"field": "$.seats", "message": "empty"}])
    if len(seat_ids) > MAX_SEATS_PER_REQUEST:
        raise OverOrderLimit(len(seat_ids), MAX_SEATS_PER_REQUEST)
    bad = [s for s in seat_ids if not SEAT_ID_RE.match(s)]
    if bad:
        raise InvalidHoldRequest(f"malformed seat id(s): {', '.join(repr(b[:40]) for b in bad[:10])}",
                                 errors=[{"field": "$.seats", "message": "malformed seat id"}])
    seen: set[str] = set()
    dups: list[str] = []
    for s in seat_ids:
        if s in seen:
            dups.append(s)
        else:
            seen.add(s)
    if dups:
        raise InvalidHoldRequest(f"seat(s) listed twice: {', '.join(dups[:10])}",
                                 errors=[{"field": "$.seats", "message": "duplicate seat id"}])
    return seat_ids


async def hold_seats(store: HoldStore, event_id: str, user_id: str, seat_ids: list[str], now_ms: int,
                     admitted: bool, admission: AdmissionClaims | None = None) -> Hold:
    validate_seat_request(seat_ids)
    return await store.hold_seats(event_id, new_hold_id(event_id), user_id, seat_ids, now_ms, admitted, admission)


async def hold_general_admission(store: HoldStore, event_id: str, user_id: str, tier: str, quantity: int,
                                 now_ms: int, admitted: bool, admission: AdmissionClaims | None = None) -> Hold:
    if not TIER_CODE_RE.match(tier):
        raise InvalidHoldRequest("malformed tier code", errors=[{"field": "$.tier", "message": "malformed"}])
    if quantity < 1:
        raise InvalidHoldRequest("quantity must be at least 1", errors=[{"field": "$.quantity", "message": "< 1"}])
    if quantity > MAX_SEATS_PER_REQUEST:
        raise OverOrderLimit(quantity, MAX_SEATS_PER_REQUEST)
    return await store.hold_general_admission(event_id, new_hold_id(event_id), user_id, tier, quantity, now_ms,
                                              admitted, admission)


async def place_hold(inventory: InventoryLoader, event_id: str, user_id: str, *, seat_ids: list[str] | None,
                     tier: str | None, quantity: int | None, now_ms: int, admitted: bool,
                     admission: AdmissionClaims | None = None) -> Hold:
    """Hold seats or general-admission tickets. If Redis lost the event's inventory, rebuild it
    from PostgreSQL (one process does, the others wait) and try once more.

    ``admission``: the verified claims of the caller's admission token, given when ``admitted``
    (its shopper session is live); the hold binds the admission to ``user_id`` and counts against it."""
    if (seat_ids is None) == (tier is None) or (tier is None) != (quantity is None):
        raise InvalidHoldRequest('send either {"seats": [...]} or {"tier": code, "quantity": n}',
                                 errors=[{"field": "$", "message": "seats xor tier+quantity"}])
    for attempt in (1, 2):
        try:
            if seat_ids is not None:
                return await hold_seats(inventory.holds, event_id, user_id, seat_ids, now_ms, admitted, admission)
            assert tier is not None and quantity is not None
            return await hold_general_admission(inventory.holds, event_id, user_id, tier, quantity, now_ms,
                                                admitted, admission)
        except InventoryNotLoaded:
            if attempt == 2:
                raise
            await inventory.ensure_loaded(event_id)
        except AdmissionNeeded:
            raise AdmissionRequired("this event is gated by a waiting room: send X-Admission-Token") from None
    raise AssertionError("unreachable")  # pragma: no cover


async def get_own_hold(store: HoldStore, hold_id: str, principal: Principal,
                       action: Action = Action.HOLD_READ) -> Hold:
    """The hold, when the policy lets the caller ``action`` it (its holder; admins); another
    user's hold is 409 (the contract's "hold not yours"; hold ids are unguessable)."""
    hold = await store.get_hold(hold_id)
    authorize(principal, action, Resource(owner_id=hold.user_id),
              hidden=NotHoldOwner("this hold belongs to another user"))
    return hold


async def release_own_hold(store: HoldStore, hold_id: str, principal: Principal, now_ms: int) -> Hold:
    """Release the caller's hold (an admin's: anyone's); returns the hold as it was before."""
    hold = await get_own_hold(store, hold_id, principal, Action.HOLD_RELEASE)
    await store.release(hold, now_ms)
    return hold
