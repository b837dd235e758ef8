"""The waiting list as fans and organizers use it (handler -> here -> WaitlistStore / HoldStore).

- join: an account joins a sold-out event's list once (FIFO by the time it joined; again, last,
  after its turn ended), wanting 1..max_tickets_per_order tickets;
- leave: off the list; a pending offer is voided and its hold released (the tickets go to the next);
- offers: the account's open offers; accept: the offer's hold is the fan's to buy, through the
  ordinary ``POST /api/holds/{id}/purchase`` (no admission token needed: the list was the queue);
- stats: the list's length and conversion, for the event's organizer and admins.

Authorization through the policy table: joining and leaving are shopping (``hold:create``),
reading one's offers is one's own account (``profile:read``), accepting an offer takes its hold
(``purchase``: nobody takes another's), the statistics are sales figures (``sales:read``).
"""

from __future__ import annotations

import datetime as dt
import logging

import msgspec

from stagedoor.auth import Principal
from stagedoor.policy import Action, Resource, authorize
from ticketing.holds.errors import HoldNotFound, InvalidHoldRequest
from ticketing.holds.store import HoldStore
from ticketing.holds.types import Hold
from ticketing.ids import EventNotFound
from ticketing.metrics import TicketingMetrics
from ticketing.waitlist.errors import (
    AlreadyOnWaitlist,
    EventNotSoldOut,
    NotOnWaitlist,
    OfferExpired,
    OfferNotFound,
)
from ticketing.waitlist.store import OfferRow, Stats, WaitlistStore

logger = logging.getLogger(__name__)


class Joined(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    quantity: int


class OfferOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    event_id: str
    quantity: int
    expires_at: dt.datetime
    state: str  # pending | accepted
    hold_id: str | None  # once accepted: the hold to buy


class OffersOut(msgspec.Struct, frozen=True, kw_only=True):
    items: list[OfferOut]


class StandingOut(msgspec.Struct, frozen=True, kw_only=True):
    state: str  # waiting | offered | done | left
    quantity: int
    position: int | None


class StatsOut(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    length: int  # fans waiting (not yet offered anything)
    offers_open: int  # fans holding an open offer right now
    offers_made: int
    offers_accepted: int  # accepted (bought or not yet)
    offers_bought: int
    offers_expired: int
    tickets_bought: int
    conversion: float | None  # bought / made (None before the first offer)


def _now(now_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)


async def join(store: WaitlistStore, metrics: TicketingMetrics, principal: Principal, event_id: int,
               quantity: int) -> Joined:
    facts = await store.event_facts(event_id)
    if facts is None or facts.status == "draft":
        raise EventNotFound(f"no event {event_id}")
    if facts.status != "sold_out":
        metrics.waitlist_joins_total.labels("not_sold_out").inc()
        raise EventNotSoldOut(facts.status)
    if quantity > facts.max_tickets_per_order:
        raise InvalidHoldRequest(f"at most {facts.max_tickets_per_order} tickets per order for this event",
                                 errors=[{"field": "$.quantity", "message": "over the per-order limit"}])
    position = await store.join(event_id, principal.id, quantity)
    if position is None:
        metrics.waitlist_joins_total.labels("already_on_list").inc()
        raise AlreadyOnWaitlist("you are on this event's waiting list already (leave it first to change it)")
    metrics.waitlist_joins_total.labels("joined").inc()
    logger.info("waitlist_joined", extra={"event_id": event_id, "position": position, "tickets": quantity})
    return Joined(position=position, quantity=quantity)


async def standing(store: WaitlistStore, principal: Principal, event_id: int) -> StandingOut:
    found = await store.standing(event_id, principal.id)
    if found is None:
        raise NotOnWaitlist()
    return StandingOut(state=found.status, quantity=found.quantity, position=found.position)


async def leave(store: WaitlistStore, holds: HoldStore, metrics: TicketingMetrics, principal: Principal,
                event_id: int, now_ms: int) -> None:
    voided = await store.leave(event_id, principal.id)
    if voided is None:
        raise NotOnWaitlist()
    metrics.waitlist_joins_total.labels("left").inc()
    logger.info("waitlist_left", extra={"event_id": event_id, "offers_voided": len(voided)})
    for hold_id in voided:  # its tickets go back; the worker offers them to the next fan
        metrics.waitlist_offers_total.labels("void").inc()
        try:
            await holds.release(await holds.get_hold(hold_id), now_ms)
        except HoldNotFound:
            pass


def _offer_out(offer: OfferRow) -> OfferOut:
    return OfferOut(id=offer.id, event_id=str(offer.event_id), quantity=offer.quantity, expires_at=offer.expires_at,
                    state=offer.status, hold_id=offer.hold_id if offer.status == "accepted" else None)


async def my_offers(store: WaitlistStore, principal: Principal, now_ms: int) -> OffersOut:
    return OffersOut(items=[_offer_out(o) for o in await store.user_offers(principal.id, _now(now_ms))])


async def accept(store: WaitlistStore, holds: HoldStore, metrics: TicketingMetrics, principal: Principal,
                 offer_id: str, now_ms: int) -> Hold:
    """The offer's hold, now the fan's to buy (accepting twice answers the same hold)."""
    offer = await store.get_offer(offer_id)
    if offer is None:
        raise OfferNotFound(f"no offer {offer_id[:40]!r}")
    authorize(principal, Action.PURCHASE, Resource(owner_id=offer.user_id),
              hidden=OfferNotFound(f"no offer {offer_id[:40]!r}"))
    if offer.status not in ("pending", "accepted"):
        raise OfferExpired(offer.status)
    try:
        hold = await holds.get_hold(offer.hold_id)
    except HoldNotFound:
        raise OfferExpired("expired") from None
    if not hold.is_live(now_ms) and hold.state != "sold":
        raise OfferExpired("expired")
    if offer.status == "pending":
        if not await store.accept(offer.id, _now(now_ms)):
            raise OfferExpired("expired")
        metrics.waitlist_offers_total.labels("accepted").inc()
        logger.info("waitlist_offer_accepted", extra={"event_id": offer.event_id, "offer_id": offer.id,
                                                      "hold_id": offer.hold_id})
    return hold


async def stats(store: WaitlistStore, principal: Principal, event_id: int) -> StatsOut:
    facts = await store.event_facts(event_id)
    if facts is None:
        raise EventNotFound(f"no event {event_id}")
    authorize(principal, Action.SALES_READ, Resource(organizer_id=facts.organizer_id),
              hidden=EventNotFound(f"no event {event_id}") if facts.status == "draft" else None)
    s: Stats = await store.stats(event_id)
    return StatsOut(event_id=str(event_id), length=s.waiting, offers_open=s.offered_now, offers_made=s.offers,
                    offers_accepted=s.accepted, offers_bought=s.bought, offers_expired=s.expired,
                    tickets_bought=s.tickets_bought,
                    conversion=round(s.bought / s.offers, 4) if s.offers else None)
