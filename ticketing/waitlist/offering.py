"""Offering returned tickets to the waiting list, in the worker (docs/waitlist.md).

Tickets of a sold-out event come back when a hold expires or is released (an offer's own hold
included), or an order is refunded. Ordinary holds cannot take them: the inventory's status is
``sold_out`` (ticketing/orders/sold_out.py writes it), and every hold script refuses unless it
is ``on_sale``. The worker offers them instead, one event at a time (:meth:`WaitlistOffering.offer_returns`,
under the event's advisory lock, so two workers never offer the same tickets or the same entry):

1. settle the open offers: a hold that was bought makes its offer ``bought``; one that ended
   (claim window over, released, lost) makes it ``expired`` and that fan's turn is over;
2. while the inventory counts free tickets, hold them for the next waiting entry
   (lua/hold_for_offer.lua: as many as it wants that are free, never more; the hold expires at
   the claim deadline) and record the offer with its WaitlistOfferMade outbox row (the e-mail);
3. free tickets and nobody waiting: the event is back on sale (PostgreSQL, the inventory's
   status and the waiting room's sold-out flag), so the queue's next admitted fans take them.

An expired offer passes to the next fan by itself: its hold's expiry returns the tickets
(the sweeper's BookingExpired, or the periodic look), and step 2 offers them again.

What sets it off: the bus (group ``waitlist``: BookingExpired, OrderRefunded, EventCancelled note
the event) and a periodic look every ``waitlist_check_interval_s`` at every event with fans
waiting or offers open, so nothing is missed after a crash. Redis first, PostgreSQL second: a
worker dying between the two leaves a hold nobody was offered, which expires on its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid

import msgspec

from stagedoor.bus_envelope import Envelope
from stagedoor.clock import Clock
from stagedoor.settings import Settings
from ticketing.catalog.inventory import Inventory
from ticketing.holds.shopper_session import AdmissionHooks
from ticketing.holds.store import HoldStore
from ticketing.holds.types import TierCount, new_hold_id
from ticketing.ids import outbox_id
from ticketing.metrics import TicketingMetrics
from ticketing.waitlist.store import Entry, EventTurn, NewOffer, WaitlistStore

logger = logging.getLogger(__name__)

MAX_OFFERS_PER_TURN = 200  # one turn holds the event's lock: bounded, the next turn goes on
MAX_SEAT_CANDIDATES = 500  # free seats read per turn (a sold-out house has few)


class OfferRun(msgspec.Struct, kw_only=True):
    """What one turn did for an event."""

    offered: list[str] = msgspec.field(default_factory=list)  # offer ids
    settled: dict[str, str] = msgspec.field(default_factory=dict)  # offer id -> bought | expired
    back_on_sale: bool = False
    closed: int = 0  # offers voided because the event was cancelled


def _free(counts: dict[str, TierCount]) -> int:
    return sum(c.free for c in counts.values())


class WaitlistOffering:
    def __init__(self, store: WaitlistStore, inventory: Inventory, admission: AdmissionHooks, settings: Settings,
                 metrics: TicketingMetrics, clock: Clock) -> None:
        self.store = store
        self.inventory = inventory
        self.holds: HoldStore = inventory.holds
        self.admission = admission
        self.offer_ttl_ms = settings.waitlist_offer_ttl_s * 1000
        self.interval_s = settings.waitlist_check_interval_s
        self.metrics = metrics
        self.clock = clock
        self._noted: set[int] = set()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------ one event
    async def offer_returns(self, event_id: int) -> OfferRun:
        """One turn for the event (see the module's docstring)."""
        run = OfferRun()
        ev = str(event_id)
        now_ms = self.clock.now_ms()
        async with self.store.event_turn(event_id) as turn:
            facts = await turn.facts()
            if facts is None:
                return run
            if facts.status == "cancelled":
                run.closed = await turn.close()
                if run.closed:
                    self.metrics.waitlist_offers_total.labels("void").inc(run.closed)
                    logger.info("waitlist_closed", extra={"event_id": ev, "offers_voided": run.closed})
                return run
            if facts.status not in ("sold_out", "on_sale"):
                return run
            await self.inventory.ensure_loaded(ev)
            await self._settle(turn, ev, now_ms, run)
            if facts.status == "sold_out":
                await self._offer_free(turn, ev, min(facts.max_tickets_per_order, 50), now_ms, run)
        if run.back_on_sale:  # after the commit: PostgreSQL first, then the copies
            await self.holds.update_meta(ev, {"status": "on_sale"})
            room = await self.admission.room_of_event(ev)
            if room is not None:
                await self.admission.resume_sale(room, now_ms)
            self.metrics.waitlist_back_on_sale_total.inc()
            logger.info("waitlist_back_on_sale", extra={"event_id": ev, "room": room})
        return run

    async def _settle(self, turn: EventTurn, ev: str, now_ms: int, run: OfferRun) -> None:
        offers = await turn.open_offers()
        holds = await self.holds.get_holds(ev, [o.hold_id for o in offers])
        for offer in offers:
            hold = holds.get(offer.hold_id)
            if hold is not None and hold.state == "sold":
                ending = "bought"
            elif hold is None or not hold.is_live(now_ms):
                ending = "expired"
            else:
                continue
            await turn.finish_offer(offer.id, ending)
            run.settled[offer.id] = ending
            self.metrics.waitlist_offers_total.labels(ending).inc()
            logger.info("waitlist_offer_" + ending, extra={"event_id": ev, "offer_id": offer.id})

    async def _offer_free(self, turn: EventTurn, ev: str, max_per_order: int, now_ms: int, run: OfferRun) -> None:
        skip: list[int] = []  # entries that cannot be offered now (they hold tickets of the event)
        meta_checked = False
        seats: list[str] | None = None  # the free seats, read once per turn (the script re-checks each)
        # expired holds give their tickets back first (as the sweeper would; it announces them)
        while (await self.holds.sweep_expired(ev, now_ms)).more:
            pass
        while len(run.offered) < MAX_OFFERS_PER_TURN:
            counts = await self.holds.tier_counts(ev)
            if counts is None or _free(counts) == 0:
                return
            entry = await turn.next_waiting(skip)
            if entry is None:
                run.back_on_sale = await turn.back_on_sale(outbox_id("WaitlistBackOnSale", f"{ev}:{now_ms}"), now_ms)
                return
            ga = [code for _, code in sorted((c.price, code) for code, c in counts.items()
                                             if c.general_admission and c.free > 0)]
            if not ga and not seats:
                seats = await self._free_seats(ev, now_ms)
            outcome, taken = await self._offer_one(turn, ev, entry, ga, [] if ga else (seats or []),
                                                   min(entry.quantity, max_per_order), now_ms, run)
            if seats and taken:
                seats = [s for s in seats if s not in taken]
            if outcome == "not_sold_out" and not meta_checked:
                # PostgreSQL says sold out and the inventory does not yet (the sell-out's second write
                # was lost): say it there too, so no ordinary hold takes what comes back.
                await self.holds.update_meta(ev, {"status": "sold_out"})
                meta_checked = True
            elif outcome == "active_hold":
                skip.append(entry.id)
            elif outcome != "offered":
                return

    async def _free_seats(self, ev: str, now_ms: int) -> list[str]:
        states, _ = await self.holds.seat_states(ev, now_ms)
        free = (s for s, state in (states or {}).items() if state == "free")
        return sorted(free, key=lambda s: (len(s), s))[:MAX_SEAT_CANDIDATES]  # seat ids s<n>: in creation order

    async def _offer_one(self, turn: EventTurn, ev: str, entry: Entry, tiers: list[str], seats: list[str],
                         wanted: int, now_ms: int, run: OfferRun) -> tuple[str, frozenset[str]]:
        """(outcome, the seats held) of offering to one entry: "offered", or the script's refusal."""
        offer_id, hold_id = str(uuid.uuid4()), new_hold_id(ev)
        expires_ms = now_ms + self.offer_ttl_ms
        held = await self.holds.hold_for_offer(ev, hold_id, entry.user_id, offer_id, wanted=wanted, now_ms=now_ms,
                                               expires_ms=expires_ms, tiers=tiers, seats=seats)
        if held.hold is None:
            return held.refusal or "none_free", frozenset()
        hold = held.hold
        expires_at = dt.datetime.fromtimestamp(expires_ms / 1000, dt.UTC)
        announcement = {"offer_id": offer_id, "event_id": ev, "user_id": entry.user_id, "quantity": hold.quantity,
                        "expires_ms": expires_ms}
        recorded = await turn.record_offer(NewOffer(
            id=offer_id, event_id=int(ev), entry_id=entry.id, user_id=entry.user_id, hold_id=hold_id,
            quantity=hold.quantity, expires_at=expires_at, announcement=announcement))
        if not recorded:  # the fan left the list meanwhile: the tickets go back at once
            await self.holds.release(hold, now_ms)
            return "offered", frozenset()
        run.offered.append(offer_id)
        self.metrics.waitlist_offers_total.labels("made").inc()
        logger.info("waitlist_offer_made", extra={"event_id": ev, "offer_id": offer_id, "hold_id": hold_id,
                                                  "tickets": hold.quantity, "wanted": wanted})
        return "offered", frozenset(hold.seats)

    # ------------------------------------------------------------ what sets it off
    @property
    def noted(self) -> frozenset[int]:
        """Events noted for the next round."""
        return frozenset(self._noted)

    def note(self, event_id: int) -> None:
        self._noted.add(event_id)
        self._wake.set()

    async def run_once(self, periodic: bool) -> None:
        noted, self._noted = self._noted, set()
        if periodic:
            noted |= set(await self.store.active_event_ids())
        for event_id in sorted(noted):
            try:
                await self.offer_returns(event_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("waitlist_offering_failed", extra={"event_id": event_id})

    async def run(self) -> None:
        """The worker's loop (ticketing/waitlist/routes.py waitlist_worker_ctx starts and cancels it)."""
        loop = asyncio.get_running_loop()
        next_look = loop.time()
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_look - loop.time())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            periodic = loop.time() >= next_look
            if periodic:
                next_look = loop.time() + self.interval_s
            try:
                await self.run_once(periodic)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("waitlist_look_failed")


class WaitlistSignals:
    """Handler of the worker's ``waitlist`` bus group: events whose tickets may have come back (or whose
    list closes) are noted for the offering loop, which handles each once however often it is noted."""

    event_types = frozenset({"BookingExpired", "OrderRefunded", "EventCancelled"})

    def __init__(self, offering: WaitlistOffering) -> None:
        self.offering = offering

    async def __call__(self, env: Envelope) -> None:
        raw = env.payload.get("event_id", env.aggregate_id if env.event_type == "EventCancelled" else None)
        try:
            self.offering.note(int(str(raw)))
        except ValueError:
            logger.warning("waitlist_bad_event_id", extra={"event_type": env.event_type, "event_id": env.event_id})
