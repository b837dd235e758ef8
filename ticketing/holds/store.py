"""HoldStore: the only code that knows the inventory's Redis keys and the hold scripts.

One method per operation; returns domain values (:class:`ticketing.holds.types.Hold`) or raises
domain errors (ticketing/holds/errors.py). Time always arrives as ``now_ms`` from the caller.

Used by the purchase code (``get_hold``, ``lock_for_payment``, ``confirm_sold``,
``release``), the hold routes, the hold sweeper (ticketing/catalog/hold_sweeper.py) and the
inventory (ticketing/catalog/inventory.py: loading and rebuilding an event's holdable state).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec
from redis.typing import EncodableT, FieldT

from stagedoor import hold_record as rec
from stagedoor.admission_tokens import AdmissionClaims
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from ticketing.holds.errors import (
    ActiveHoldExists,
    AdmissionInUse,
    AdmissionLimitReached,
    AdmissionNeeded,
    EventNotOnSale,
    HoldAlreadySold,
    HoldExpired,
    HoldLocked,
    HoldNotFound,
    HoldReleased,
    HoldSeatLost,
    InvalidHoldRequest,
    InventoryNotLoaded,
    InventoryUnavailable,
    OverOrderLimit,
    SeatUnavailable,
    TicketsUnavailable,
    UnknownSeats,
    redis_or_unavailable,
)
from ticketing.holds.types import (
    Hold,
    HoldItem,
    InventoryMeta,
    OfferHeld,
    StagedTier,
    SweepResult,
    TierCount,
    event_of_hold_id,
)

LOAD_CHUNK = 5_000
# Expired holds reclaimed inline by a general-admission hold that finds its counter short.
INLINE_RECLAIM_LIMIT = 100
# An admission stays bound to its first user, with its count of tickets bought, for the admission
# token's lifetime left plus a grace (clocks of app hosts and Redis differ a little), never longer
# than a day: one small hash per admission in use, gone when the token is.
ADMISSION_BINDING_GRACE_MS = 60_000
ADMISSION_BINDING_MAX_MS = 86_400_000


def admission_binding_ttl_ms(admission: AdmissionClaims, now_ms: int) -> int:
    return min(max(0, admission.exp * 1000 - now_ms), ADMISSION_BINDING_MAX_MS) + ADMISSION_BINDING_GRACE_MS


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class HoldStore:
    def __init__(self, calls: RedisCalls, keys: RedisKeys) -> None:
        self.calls = calls
        self.redis = calls.redis
        self.keys = keys
        # event id -> how many seat-state writes this process has finished for it: a cached seat
        # map (ticketing/catalog/seat_map_cache.py) read before the last write is not served again.
        self._versions: dict[str, int] = {}

    def version(self, event_id: str) -> int:
        return self._versions.get(event_id, 0)

    def _touched(self, event_id: str) -> None:
        """After (never before) a write to the event's inventory has been answered."""
        self._versions[event_id] = self._versions.get(event_id, 0) + 1

    # ------------------------------------------------------------ helpers
    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Any], event_id: str) -> list[Any]:
        """Run one inventory script of ``event_id`` (every one of them may change seat states)."""
        try:
            with redis_or_unavailable():
                reply = await self.calls.script(name, keys, args)
        finally:
            self._touched(event_id)
        return [_s(x) if isinstance(x, bytes) else x for x in reply]

    def hold_record_command(self, hold_id: str) -> tuple[str, str, str]:
        """The read of a hold's record as one command, for a caller's own round trip (the purchase
        sends it with its Idempotency-Key claim); decode the reply with :meth:`hold_from_record`."""
        return ("HGET", self.keys.hold_records(event_of_hold_id(hold_id)), hold_id)

    def hold_from_record(self, hold_id: str, raw: bytes | str) -> Hold:
        """The hold of a record the hold scripts wrote (fields: lua/hold_record.md)."""
        r = msgspec.json.decode(raw)
        kind: Literal["seats", "general_admission"]
        if r[rec.KIND] == rec.KIND_SEATS:
            items = tuple(HoldItem(seat=i[0], tier=i[1], price=int(i[2])) for i in r[rec.ITEMS])
            kind, tier = "seats", None
        else:
            items = tuple(HoldItem(seat=None, tier=r[rec.TIER], price=int(r[rec.UNIT_PRICE]))
                          for _ in range(int(r[rec.QUANTITY])))
            kind, tier = "general_admission", r[rec.TIER]
        return Hold(id=hold_id, event_id=event_of_hold_id(hold_id), user_id=r[rec.USER], state=r[rec.STATE],
                    kind=kind, items=items, tier=tier, quantity=int(r[rec.QUANTITY]), total=int(r[rec.TOTAL]),
                    currency=r[rec.CURRENCY], created_ms=int(r[rec.CREATED_MS]), expires_ms=int(r[rec.EXPIRES_MS]),
                    admission=r.get(rec.ADMISSION), offer=r.get(rec.OFFER))

    def _admission(self, event_id: str, admission: AdmissionClaims | None, now_ms: int
                   ) -> tuple[list[str], list[str | int]]:
        """The hold scripts' admission key (none without one) and arguments (jti, binding ttl)."""
        if admission is None:
            return [], ["", 0]
        return ([self.keys.admission_binding(event_id, admission.jti)],
                [admission.jti, admission_binding_ttl_ms(admission, now_ms)])

    def _refuse(self, reply: list[Any], requested: int) -> None:
        status = reply[0]
        if status == "not_loaded":
            raise InventoryNotLoaded()
        if status == "admission_required":
            raise AdmissionNeeded()
        if status == "not_on_sale":
            raise EventNotOnSale(f"the event is {reply[1] or 'not on sale'}")
        if status == "over_limit":
            raise OverOrderLimit(requested, int(reply[1]))
        if status == "admission_in_use":
            raise AdmissionInUse()
        if status == "admission_limit":
            raise AdmissionLimitReached(requested, int(reply[1]), int(reply[2]))
        if status == "duplicate_seat":
            raise InvalidHoldRequest(f"seat {reply[1]} listed twice")
        if status == "active_hold":
            raise ActiveHoldExists(reply[1])
        if status == "unknown_seats":
            raise UnknownSeats(list(reply[1:]))
        if status == "seat_unavailable":
            raise SeatUnavailable(list(reply[1:]))
        if status == "unknown_tier":
            raise InvalidHoldRequest("no such general-admission tier",
                                     errors=[{"field": "$.tier", "message": "unknown tier"}])
        if status == "sold_out":
            raise TicketsUnavailable("", int(reply[1]))
        raise RuntimeError(f"unexpected script reply {reply!r}")  # pragma: no cover - a bug

    # ------------------------------------------------------------ holds (purchase code uses these)
    async def get_hold(self, hold_id: str) -> Hold:
        """The hold as recorded (state as stored: see Hold.effective_state). HoldNotFound if absent."""
        event_id = event_of_hold_id(hold_id)
        with redis_or_unavailable():
            raw = await self.redis.hget(self.keys.hold_records(event_id), hold_id)
        if raw is None:
            raise HoldNotFound(f"no hold {hold_id}")
        return self.hold_from_record(hold_id, raw)

    async def get_holds(self, event_id: str, hold_ids: Sequence[str]) -> dict[str, Hold]:
        """The recorded holds of one event among ``hold_ids`` (one HMGET); absent ones are left out."""
        if not hold_ids:
            return {}
        with redis_or_unavailable():
            raws = await self.redis.hmget(self.keys.hold_records(event_id), list(hold_ids))
        return {hid: self.hold_from_record(hid, raw)
                for hid, raw in zip(hold_ids, raws, strict=True) if raw is not None}

    async def hold_seats(self, event_id: str, hold_id: str, user_id: str, seat_ids: Sequence[str], now_ms: int,
                         admitted: bool, admission: AdmissionClaims | None = None) -> Hold:
        """``admission``: the claims of the caller's admission token when ``admitted`` (gated event):
        the hold binds it to ``user_id`` or is refused (AdmissionInUse, AdmissionLimitReached)."""
        k = self.keys
        adm_keys, adm_args = self._admission(event_id, admission, now_ms)
        reply = await self._call("hold_seats", [
            k.inventory_meta(event_id), k.inventory_tiers(event_id), k.inventory_seats(event_id),
            k.inventory_seat_tiers(event_id), k.hold_expiry(event_id), k.hold_records(event_id),
            k.hold_users(event_id), k.event_room(event_id), *adm_keys,
        ], [hold_id, user_id, now_ms, "1" if admitted else "0", *adm_args, *seat_ids], event_id)
        if reply[0] != "ok":
            self._refuse(reply, len(seat_ids))
        expires_ms, total, currency = int(reply[1]), int(reply[2]), reply[3]
        pairs = reply[4:]
        items = tuple(HoldItem(seat=seat, tier=pairs[2 * i], price=int(pairs[2 * i + 1]))
                      for i, seat in enumerate(seat_ids))
        return Hold(id=hold_id, event_id=event_id, user_id=user_id, state="held", kind="seats", items=items,
                    tier=None, quantity=len(items), total=total, currency=currency, created_ms=now_ms,
                    expires_ms=expires_ms, admission=admission.jti if admission is not None else None)

    async def hold_general_admission(self, event_id: str, hold_id: str, user_id: str, tier: str, quantity: int,
                                     now_ms: int, admitted: bool, admission: AdmissionClaims | None = None) -> Hold:
        """``admission``: as for :meth:`hold_seats`."""
        k = self.keys
        adm_keys, adm_args = self._admission(event_id, admission, now_ms)
        reply = await self._call("hold_general_admission", [
            k.inventory_meta(event_id), k.inventory_tiers(event_id), k.inventory_seats(event_id),
            k.hold_expiry(event_id), k.hold_records(event_id), k.hold_users(event_id), k.holds_done(event_id),
            k.holds_expired_log(event_id), k.event_room(event_id), *adm_keys,
        ], [hold_id, user_id, now_ms, "1" if admitted else "0", tier, quantity, INLINE_RECLAIM_LIMIT, *adm_args],
            event_id)
        if reply[0] != "ok":
            if reply[0] == "sold_out":
                raise TicketsUnavailable(tier, int(reply[1]))
            self._refuse(reply, quantity)
        price = int(reply[4])
        items = tuple(HoldItem(seat=None, tier=tier, price=price) for _ in range(quantity))
        return Hold(id=hold_id, event_id=event_id, user_id=user_id, state="held", kind="general_admission",
                    items=items, tier=tier, quantity=quantity, total=int(reply[2]), currency=reply[3],
                    created_ms=now_ms, expires_ms=int(reply[1]),
                    admission=admission.jti if admission is not None else None)

    async def hold_for_offer(self, event_id: str, hold_id: str, user_id: str, offer_id: str, *, wanted: int,
                             now_ms: int, expires_ms: int, tiers: Sequence[str] = (),
                             seats: Sequence[str] = ()) -> OfferHeld:
        """Hold up to ``wanted`` returned tickets of a sold-out event for a waiting-list offer
        (lua/hold_for_offer.lua): general admission from ``tiers`` (in order of preference), or
        the free ones of ``seats``. Never needs an admission; refused unless the event is sold out."""
        k = self.keys
        kind, candidates = ("s", list(seats)) if seats else ("g", list(tiers))
        reply = await self._call("hold_for_offer", [
            k.inventory_meta(event_id), k.inventory_tiers(event_id), k.inventory_seats(event_id),
            k.inventory_seat_tiers(event_id), k.hold_expiry(event_id), k.hold_records(event_id),
            k.hold_users(event_id), k.holds_done(event_id), k.holds_expired_log(event_id),
        ], [hold_id, user_id, now_ms, expires_ms, wanted, offer_id, INLINE_RECLAIM_LIMIT, kind, *candidates],
            event_id)
        status = reply[0]
        if status == "not_loaded":
            raise InventoryNotLoaded()
        if status in ("not_sold_out", "active_hold", "none_free"):
            return OfferHeld(hold=None, refusal=status)
        if status != "ok":  # pragma: no cover - a bug
            raise RuntimeError(f"unexpected script reply {reply!r}")
        quantity, total, currency, tier = int(reply[1]), int(reply[2]), reply[3], reply[4]
        triples = reply[5:]
        if kind == "s":
            items = tuple(HoldItem(seat=triples[i], tier=triples[i + 1], price=int(triples[i + 2]))
                          for i in range(0, len(triples), 3))
        else:
            items = tuple(HoldItem(seat=None, tier=tier, price=total // quantity) for _ in range(quantity))
        return OfferHeld(hold=Hold(
            id=hold_id, event_id=event_id, user_id=user_id, state="held",
            kind="seats" if kind == "s" else "general_admission", items=items, tier=tier or None, quantity=quantity,
            total=total, currency=currency, created_ms=now_ms, expires_ms=expires_ms, offer=offer_id))

    async def lock_for_payment(self, hold: Hold, now_ms: int, window_ms: int) -> Hold:
        """Extend a live hold to now_ms + window_ms so it cannot expire mid-charge.

        Raises HoldExpired (410), HoldReleased (410), HoldSeatLost (410), HoldAlreadySold (409),
        HoldNotFound (404; also after a Redis data loss dropped it), EventNotOnSale (409: cancelled)."""
        k, ev = self.keys, hold.event_id
        reply = await self._call("lock_hold_for_payment", [
            k.inventory_seats(ev), k.hold_expiry(ev), k.hold_records(ev), k.inventory_meta(ev),
        ], [hold.id, now_ms, window_ms], ev)
        status = reply[0]
        if status == "ok":
            return msgspec.structs.replace(hold, state="locked", expires_ms=int(reply[1]))
        if status == "not_found":
            raise HoldNotFound(f"no hold {hold.id}")
        if status == "expired":
            raise HoldExpired("the hold expired; hold the seats again")
        if status == "released":
            raise HoldReleased("the hold was released")
        if status == "sold":
            raise HoldAlreadySold("the hold has already been purchased")
        if status == "seat_lost":
            raise HoldSeatLost(f"seat {reply[1]} is no longer held by this hold", seat_id=reply[1])
        if status == "not_on_sale":
            raise EventNotOnSale(f"the event is {reply[1]}: this hold can no longer be bought; nothing was charged")
        raise RuntimeError(f"unexpected script reply {reply!r}")  # pragma: no cover

    async def unlock_after_failed_payment(self, held: Hold) -> int | None:
        """A charge failed: the locked hold returns to "held" with the expiry it had before the
        lock (``held`` is the hold as it was read before lock_for_payment). Returns the expiry,
        or None when the hold was no longer locked (nothing written)."""
        k, ev = self.keys, held.event_id
        reply = await self._call("unlock_hold_after_failed_payment", [
            k.inventory_seats(ev), k.hold_expiry(ev), k.hold_records(ev),
        ], [held.id, held.expires_ms], ev)
        return int(reply[1]) if reply[0] == "ok" else None

    async def confirm_sold(self, hold: Hold, now_ms: int) -> list[str]:
        """Mirror a committed sale: seats/tickets become sold. Never refuses (PostgreSQL is the
        truth). Returns seats that were meanwhile in another live hold (normally empty). The tickets
        count against the admission the hold was placed with (``hold.admission``, read from its record)."""
        k, ev = self.keys, hold.event_id
        ga_tier = hold.tier or "" if hold.kind == "general_admission" else ""
        ga_qty = hold.quantity if hold.kind == "general_admission" else 0
        adm_keys = [k.admission_binding(ev, hold.admission)] if hold.admission else []
        reply = await self._call("confirm_hold_sold", [
            k.inventory_tiers(ev), k.inventory_seats(ev), k.inventory_seat_tiers(ev), k.hold_expiry(ev),
            k.hold_records(ev), k.hold_users(ev), k.holds_done(ev), *adm_keys,
        ], [hold.id, now_ms, ga_tier, ga_qty, *hold.seats], ev)
        return list(reply[1:]) if reply[0] == "ok" else []

    async def release(self, hold: Hold, now_ms: int) -> None:
        """Give the hold back. Already released/expired: no-op. Raises HoldLocked (payment in
        progress, 409), HoldAlreadySold (409), HoldNotFound (404)."""
        k, ev = self.keys, hold.event_id
        reply = await self._call("release_hold", [
            k.inventory_tiers(ev), k.inventory_seats(ev), k.hold_expiry(ev), k.hold_records(ev),
            k.hold_users(ev), k.holds_done(ev),
        ], [hold.id, now_ms], ev)
        status = reply[0]
        if status in ("ok", "gone"):
            return
        if status == "not_found":
            raise HoldNotFound(f"no hold {hold.id}")
        if status == "locked":
            raise HoldLocked("a payment for this hold is in progress")
        if status == "sold":
            raise HoldAlreadySold("the hold has already been purchased")
        raise RuntimeError(f"unexpected script reply {reply!r}")  # pragma: no cover

    # ------------------------------------------------------------ expiry
    async def sweep_expired(self, event_id: str, now_ms: int, limit: int = 500,
                            purge_before_ms: int | None = None, purge_limit: int = 500) -> SweepResult:
        k, ev = self.keys, event_id
        purge_before = purge_before_ms if purge_before_ms is not None else -1
        reply = await self._call("sweep_expired_holds", [
            k.inventory_tiers(ev), k.inventory_seats(ev), k.hold_expiry(ev), k.hold_records(ev),
            k.hold_users(ev), k.holds_done(ev), k.holds_expired_log(ev),
        ], [now_ms, limit, purge_before, purge_limit], ev)
        return SweepResult(int(reply[0]), bool(reply[1]), int(reply[2]))

    async def peek_expired(self, event_id: str, limit: int = 500) -> list[tuple[str, Hold | None]]:
        """The oldest reclaimed-but-unannounced holds (id, record if still there)."""
        ids = [_s(x) for x in await self.redis.lrange(self.keys.holds_expired_log(event_id), 0, limit - 1)]
        if not ids:
            return []
        raws = await self.redis.hmget(self.keys.hold_records(event_id), ids)
        return [(hid, self.hold_from_record(hid, raw) if raw is not None else None)
                for hid, raw in zip(ids, raws, strict=True)]

    async def ack_expired(self, event_id: str, count: int) -> None:
        """Drop the first ``count`` ids of the expired log (after their outbox rows committed)."""
        await self.redis.ltrim(self.keys.holds_expired_log(event_id), count, -1)

    # ------------------------------------------------------------ reads
    async def is_loaded(self, event_id: str) -> bool:
        with redis_or_unavailable():
            return bool(await self.redis.exists(self.keys.inventory_meta(event_id)))

    async def tier_counts(self, event_id: str) -> dict[str, TierCount] | None:
        """Per-tier price/capacity/free/sold, or None when the inventory is not loaded."""
        with redis_or_unavailable():
            raw = await self.redis.hgetall(self.keys.inventory_tiers(event_id))
        if not raw:
            return None
        fields = {_s(f): _s(v) for f, v in raw.items()}
        codes = {f[2:] for f in fields if f.startswith("p:")}
        return {code: TierCount(price=int(fields[f"p:{code}"]), capacity=int(fields.get(f"c:{code}", 0)),
                                free=max(0, int(fields.get(f"f:{code}", 0))), sold=int(fields.get(f"s:{code}", 0)),
                                general_admission=fields.get(f"ga:{code}") == "1")
                for code in codes}

    async def seat_states(self, event_id: str, now_ms: int) -> tuple[dict[str, str] | None, int | None]:
        """(seat_id -> "free" | "held" | "sold", or None if not loaded; the earliest expiry in ms of
        a live hold among them, None when no seat is held). An expired hold's seat is free; until
        that earliest expiry, and without writes, the states read here stay true."""
        with redis_or_unavailable():
            raw = await self.redis.hgetall(self.keys.inventory_seats(event_id))
        if not raw:
            return None, None
        out: dict[str, str] = {}
        earliest: int | None = None
        for seat, value in raw.items():
            v = _s(value)
            if v == "0":
                out[_s(seat)] = "free"
            elif v == "s":
                out[_s(seat)] = "sold"
            else:
                expires_ms = int(v.rpartition(":")[2])
                if expires_ms > now_ms:
                    out[_s(seat)] = "held"
                    earliest = expires_ms if earliest is None else min(earliest, expires_ms)
                else:
                    out[_s(seat)] = "free"
        return out, earliest

    # ------------------------------------------------------------ loading (ticketing/catalog/inventory.py)
    async def load(self, event_id: str, meta: InventoryMeta, tiers: Iterable[StagedTier],
                   seats: Iterable[tuple[str, str, bool]], generation: str, room: str | None = None) -> None:
        """Stage the inventory (seats: (seat_id, tier, sold)) then swap it in atomically, with the
        event -> room link when ``room`` gates the event (in the same script as the meta)."""
        k, ev = self.keys, event_id
        staged = {w: k.inventory_staging(ev, w) for w in ("meta", "tiers", "seats", "seat_tiers")}
        await self.redis.delete(*staged.values())
        tier_fields: dict[FieldT, EncodableT] = {}  # redis-py's hset mapping type
        seated_free: dict[str, int] = {}
        seated_sold: dict[str, int] = {}
        chunk_states: dict[FieldT, EncodableT] = {}
        chunk_tiers: dict[FieldT, EncodableT] = {}

        async def flush() -> None:
            if chunk_states:
                pipe = self.redis.pipeline(transaction=False)
                pipe.hset(staged["seats"], mapping=chunk_states)
                pipe.hset(staged["seat_tiers"], mapping=chunk_tiers)
                await pipe.execute()
                chunk_states.clear()
                chunk_tiers.clear()

        sold: int  # a seat's sold flag here, a tier's sold count below
        for seat_id, tier, sold in seats:
            chunk_states[seat_id] = "s" if sold else "0"
            chunk_tiers[seat_id] = tier
            if sold:
                seated_sold[tier] = seated_sold.get(tier, 0) + 1
            else:
                seated_free[tier] = seated_free.get(tier, 0) + 1
            if len(chunk_states) >= LOAD_CHUNK:
                await flush()
        await flush()
        for t in tiers:
            tier_fields[f"p:{t.code}"] = t.price
            if t.general_admission:
                tier_fields[f"ga:{t.code}"] = "1"
                tier_fields[f"c:{t.code}"] = t.capacity
                tier_fields[f"s:{t.code}"] = t.sold
                tier_fields[f"f:{t.code}"] = max(0, t.capacity - t.sold)
            else:
                sold = seated_sold.get(t.code, 0)
                free = seated_free.get(t.code, 0)
                tier_fields[f"c:{t.code}"] = sold + free
                tier_fields[f"s:{t.code}"] = sold
                tier_fields[f"f:{t.code}"] = free
        pipe = self.redis.pipeline(transaction=False)
        if tier_fields:
            pipe.hset(staged["tiers"], mapping=tier_fields)
        pipe.hset(staged["meta"], mapping={"status": meta.status, "currency": meta.currency,
                                           "max_per_order": meta.max_per_order, "hold_ttl_ms": meta.hold_ttl_ms})
        await pipe.execute()
        reply = await self._call("load_inventory", [
            k.inventory_meta(ev), k.inventory_tiers(ev), k.inventory_seats(ev), k.inventory_seat_tiers(ev),
            k.hold_expiry(ev), k.hold_records(ev), k.hold_users(ev),
            staged["meta"], staged["tiers"], staged["seats"], staged["seat_tiers"], k.holds_done(ev),
            k.event_room(ev),
        ], [generation, room or ""], event_id)
        if reply[0] != "ok":  # pragma: no cover - staged meta was written just above
            raise InventoryUnavailable("inventory staging vanished during load")
        await self.redis.sadd(k.events_on_sale(), ev)

    async def update_meta(self, event_id: str, fields: Mapping[str, str | int]) -> None:
        """Change status / limits of a loaded inventory (no-op when not loaded)."""
        args = [x for field, value in fields.items() for x in (field, value)]
        if args:
            try:
                await self.calls.script("update_inventory_meta", [self.keys.inventory_meta(event_id)], args)
            finally:
                self._touched(event_id)

    async def take_sweeper_lock(self, token: str, ttl_ms: int) -> bool:
        """The hold sweeper's lock: taken (or kept, when ``token`` holds it) for ``ttl_ms``; False
        when another worker holds it. One replica sweeps at a time."""
        lock = self.keys.hold_sweeper_lock()
        if not await self.redis.set(lock, token, nx=True, px=ttl_ms) and await self.redis.get(lock) != token.encode():
            return False
        await self.redis.pexpire(lock, ttl_ms)
        return True

    async def on_sale_event_ids(self) -> list[str]:
        return sorted(_s(x) for x in await self.redis.smembers(self.keys.events_on_sale()))

    async def forget_event(self, event_id: str) -> None:
        await self.redis.srem(self.keys.events_on_sale(), event_id)
        self._touched(event_id)

