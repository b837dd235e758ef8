"""The hold as the domain sees it: its items, its state, and its id (which names its event, so
``/api/holds/{id}`` finds the event's keys without a lookup); and the holdable inventory's values
the hold store reads and writes (tier counts, the event's inventory meta, what a sweep did)."""

from __future__ import annotations

import re
import secrets
from typing import Literal

import msgspec

from ticketing.holds.errors import HoldNotFound

HoldState = Literal["held", "locked", "sold", "released", "expired"]

HOLD_ID_RE = re.compile(r"^([1-9][0-9]{0,17})-([0-9a-f]{24})$")


class HoldItem(msgspec.Struct, frozen=True, kw_only=True):
    """One ticket of a hold: a seat (None for general admission), its tier and unit price."""

    seat: str | None
    tier: str
    price: int


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    event_id: str
    user_id: str
    state: HoldState
    kind: Literal["seats", "general_admission"]
    items: tuple[HoldItem, ...]
    tier: str | None          # general admission: the tier; seated: None
    quantity: int             # number of tickets
    total: int                # minor units
    currency: str
    created_ms: int
    expires_ms: int
    admission: str | None = None  # jti of the admission token it was placed with (gated events)
    offer: str | None = None  # the waiting-list offer it is (lua/hold_for_offer.lua), bought without admission

    @property
    def seats(self) -> list[str]:
        return [i.seat for i in self.items if i.seat is not None]

    def is_live(self, now_ms: int) -> bool:
        """Held or locked for payment, and not past its expiry."""
        return self.state in ("held", "locked") and self.expires_ms > now_ms

    def effective_state(self, now_ms: int) -> HoldState:
        """The state a client should see: a held hold past its expiry is expired."""
        if self.state in ("held", "locked") and self.expires_ms <= now_ms:
            return "expired"
        return self.state


def new_hold_id(event_id: str) -> str:
    """Unguessable, and names its event so /api/holds/{id} finds the event's keys."""
    return f"{event_id}-{secrets.token_hex(12)}"


def event_of_hold_id(hold_id: str) -> str:
    match = HOLD_ID_RE.match(hold_id)
    if match is None:
        raise HoldNotFound(f"no hold {hold_id[:60]!r}")
    return match.group(1)


class TierCount(msgspec.Struct, frozen=True):
    price: int
    capacity: int
    free: int
    sold: int
    general_admission: bool

    @property
    def held(self) -> int:
        return max(0, self.capacity - self.free - self.sold)


class InventoryMeta(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    currency: str
    max_per_order: int
    hold_ttl_ms: int


class StagedTier(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    price: int
    capacity: int
    sold: int
    general_admission: bool


class OfferHeld(msgspec.Struct, frozen=True, kw_only=True):
    """What ``hold_for_offer`` held: the hold (quantity may be less than wanted), or why nothing."""

    hold: Hold | None
    refusal: Literal["not_sold_out", "active_hold", "none_free"] | None = None


class SweepResult(msgspec.Struct, frozen=True):
    reclaimed: int
    more: bool
    purged: int
