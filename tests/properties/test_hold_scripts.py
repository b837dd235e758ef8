"""Hypothesis, stateful: the hold scripts (hold_seats, hold_general_admission, release_hold,
lock_hold_for_payment, confirm_hold_sold, sweep_expired_holds) against a Python model of seat
states, on the real Redis through the HoldStore, with a clock the test moves.

Holds are placed with or without an admission (a token's jti): an admission is bound to the
first user who holds with it (any other user: AdmissionInUse), and a hold whose tickets plus
those already bought through its admission would pass max_per_order is refused
(AdmissionLimitReached); confirm_sold counts the tickets sold against the hold's admission.

Invariants after every step: a seat is never in two live holds; every live hold's seats point
at it; the free/sold counters equal what the seat states say; GA free = capacity - sold -
tickets in unreclaimed holds; at most one live hold per user; every hold's stored state and
admission are the model's; each admission's binding in Redis (owner, tickets bought) is the
model's, and what it bought plus what its live holds hold is within max_per_order.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field

import msgspec
import redis.asyncio as redis_asyncio
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from stagedoor.admission_tokens import AdmissionClaims
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from ticketing.holds import errors
from ticketing.holds.store import HoldStore
from ticketing.holds.types import InventoryMeta, StagedTier

EVENT = "7"
TTL_MS = 1_000
SEATS = {f"s{i}": ("A" if i <= 6 else "B") for i in range(1, 9)}
PRICES = {"A": 100, "B": 50, "G": 10}
GA_CAPACITY = 5
MAX_PER_ORDER = 4
USERS = ("u1", "u2", "u3", "u4")
ADMISSIONS = (None, "j1", "j2")  # a hold without an admission, or with one of two admission tokens
ADMISSION_EXP_S = 10_000  # the tokens' exp: after every step's clock (the model starts at 1,000 s)


def claims(jti: str | None) -> AdmissionClaims | None:
    return None if jti is None else AdmissionClaims(visitor_id=f"v-{jti}", room="r1", event_id=EVENT, jti=jti,
                                                    exp=ADMISSION_EXP_S)


@dataclass
class ModelHold:
    user: str
    kind: str                      # "s" | "g"
    seats: list[str]
    qty: int
    state: str                     # held | locked | sold | released | expired
    exp: int
    before: int = 0                # expiry before the last lock_for_payment
    adm: str | None = None         # the admission it was placed with


@dataclass
class Model:
    now: int = 1_000_000
    seat: dict[str, object] = field(default_factory=lambda: dict.fromkeys(SEATS, "free"))  # "free"|"sold"|hold id
    holds: dict[str, ModelHold] = field(default_factory=dict)
    ga_sold: int = 0
    user_marker: dict[str, str] = field(default_factory=dict)
    bindings: dict[str, list[object]] = field(default_factory=dict)  # jti -> [owner, tickets bought]

    def admission_refusal(self, adm: str | None, user: str, qty: int) -> str | None:
        if adm is None or adm not in self.bindings:
            return None
        owner, bought = self.bindings[adm]
        if owner != user:
            return "admission_in_use"
        return "admission_limit" if qty + bought > MAX_PER_ORDER else None  # type: ignore[operator]

    def bind(self, adm: str | None, user: str) -> None:
        if adm is not None and adm not in self.bindings:
            self.bindings[adm] = [user, 0]

    def live(self, hid: str) -> bool:
        h = self.holds[hid]
        return h.state in ("held", "locked") and h.exp > self.now

    def user_has_live(self, user: str) -> bool:
        hid = self.user_marker.get(user)
        return hid is not None and self.live(hid)

    def seat_taken(self, s: str) -> bool:
        v = self.seat[s]
        return v == "sold" or (v != "free" and self.holds[v].exp > self.now)  # type: ignore[index]

    def ga_counter(self) -> int:
        return GA_CAPACITY - self.ga_sold - sum(h.qty for h in self.holds.values()
                                                  if h.kind == "g" and h.state in ("held", "locked"))

    def reclaim(self, hid: str) -> None:
        h = self.holds[hid]
        for s in h.seats:
            if self.seat[s] == hid:
                self.seat[s] = "free"
        h.state = "expired"
        if self.user_marker.get(h.user) == hid:
            del self.user_marker[h.user]

    def reclaim_all_expired(self) -> None:
        for hid, h in self.holds.items():
            if h.state in ("held", "locked") and h.exp <= self.now:
                self.reclaim(hid)


class HoldScripts(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.prefix = "hp" + uuid.uuid4().hex[:10]
        self.redis = redis_asyncio.Redis.from_url(os.environ.get("STAGEDOOR_TEST_REDIS_URL",
                                                                 "redis://127.0.0.1:6379/0"))
        scripts = LuaScripts(self.redis)
        self.run(scripts.load_all())
        self.store = HoldStore(RedisCalls.batched(self.redis, scripts), RedisKeys(self.prefix))
        self.model = Model()
        self.serial = 0

    def next_hold_id(self) -> str:
        """Deterministic ids: Hypothesis replays draw the same holds in the same order."""
        self.serial += 1
        return f"{EVENT}-{self.serial:024x}"

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    @initialize()
    def load(self) -> None:
        meta = InventoryMeta(status="on_sale", currency="EUR", max_per_order=MAX_PER_ORDER, hold_ttl_ms=TTL_MS)
        tiers = [StagedTier(code="A", price=PRICES["A"], capacity=0, sold=0, general_admission=False),
                 StagedTier(code="B", price=PRICES["B"], capacity=0, sold=0, general_admission=False),
                 StagedTier(code="G", price=PRICES["G"], capacity=GA_CAPACITY, sold=0, general_admission=True)]
        self.run(self.store.load(EVENT, meta, tiers, [(s, t, False) for s, t in SEATS.items()], "g1"))

    def teardown(self) -> None:
        async def clean() -> None:
            keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
            if keys:
                await self.redis.delete(*keys)
            await self.redis.srem(f"{self.prefix}:ev_on_sale", EVENT)
            await self.redis.aclose()
        self.run(clean())
        self.loop.close()

    # ------------------------------------------------------------ rules
    @rule(user=st.sampled_from(USERS), seats=st.lists(st.sampled_from(sorted(SEATS)), min_size=1, max_size=5,
                                                      unique=True), adm=st.sampled_from(ADMISSIONS))
    def hold_seats(self, user: str, seats: list[str], adm: str | None) -> None:
        m = self.model
        hid = self.next_hold_id()
        refusal = m.admission_refusal(adm, user, len(seats))
        if len(seats) > MAX_PER_ORDER:
            expected = "over_limit"
        elif refusal is not None:
            expected = refusal
        elif m.user_has_live(user):
            expected = "active_hold"
        elif any(m.seat_taken(s) for s in seats):
            expected = "seat_unavailable"
        else:
            expected = "ok"
        try:
            hold = self.run(self.store.hold_seats(EVENT, hid, user, seats, m.now, True, claims(adm)))
            outcome = "ok"
        except errors.OverOrderLimit:
            outcome = "over_limit"
        except errors.AdmissionInUse:
            outcome = "admission_in_use"
        except errors.AdmissionLimitReached:
            outcome = "admission_limit"
        except errors.ActiveHoldExists:
            outcome = "active_hold"
        except errors.SeatUnavailable as exc:
            outcome = "seat_unavailable"
            assert set(exc.seat_ids) == {s for s in seats if m.seat_taken(s)}
        assert outcome == expected
        event(f"outcome: {outcome}")
        if outcome == "ok":
            assert hold.total == sum(PRICES[SEATS[s]] for s in seats) and hold.admission == adm
            m.holds[hid] = ModelHold(user, "s", list(seats), len(seats), "held", m.now + TTL_MS, adm=adm)
            m.bind(adm, user)
            for s in seats:
                m.seat[s] = hid
            m.user_marker[user] = hid

    @rule(user=st.sampled_from(USERS), qty=st.integers(min_value=1, max_value=5), adm=st.sampled_from(ADMISSIONS))
    def hold_general_admission(self, user: str, qty: int, adm: str | None) -> None:
        m = self.model
        hid = self.next_hold_id()
        refusal = m.admission_refusal(adm, user, qty)
        if qty > MAX_PER_ORDER:
            expected = "over_limit"
        elif refusal is not None:
            expected = refusal
        elif m.user_has_live(user):
            expected = "active_hold"
        else:
            if m.ga_counter() < qty:
                m.reclaim_all_expired()  # what the script does when its counter is short
            expected = "ok" if m.ga_counter() >= qty else "sold_out"
        try:
            self.run(self.store.hold_general_admission(EVENT, hid, user, "G", qty, m.now, True, claims(adm)))
            outcome = "ok"
        except errors.OverOrderLimit:
            outcome = "over_limit"
        except errors.AdmissionInUse:
            outcome = "admission_in_use"
        except errors.AdmissionLimitReached:
            outcome = "admission_limit"
        except errors.ActiveHoldExists:
            outcome = "active_hold"
        except errors.TicketsUnavailable:
            outcome = "sold_out"
        assert outcome == expected
        event(f"outcome: {outcome}")
        if outcome == "ok":
            m.holds[hid] = ModelHold(user, "g", [], qty, "held", m.now + TTL_MS, adm=adm)
            m.user_marker[user] = hid
            m.bind(adm, user)

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        m = self.model
        hid = data.draw(st.sampled_from(sorted(m.holds)))
        h = m.holds[hid]
        if h.state == "sold":
            expected = "sold"
        elif h.state in ("released", "expired"):
            expected = "ok"
        elif h.state == "locked" and h.exp > m.now:
            expected = "locked"
        else:
            expected = "ok"
            for s in h.seats:
                if m.seat[s] == hid:
                    m.seat[s] = "free"
            h.state = "released"
            if m.user_marker.get(h.user) == hid:
                del m.user_marker[h.user]
        hold = self.run(self.store.get_hold(hid))
        try:
            self.run(self.store.release(hold, m.now))
            outcome = "ok"
        except errors.HoldAlreadySold:
            outcome = "sold"
        except errors.HoldLocked:
            outcome = "locked"
        assert outcome == expected
        event(f"outcome: {outcome}")

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data(), window=st.integers(min_value=1, max_value=3_000))
    def lock_for_payment(self, data: st.DataObject, window: int) -> None:
        m = self.model
        hid = data.draw(st.sampled_from(sorted(m.holds)))
        h = m.holds[hid]
        if h.state in ("sold", "released", "expired"):
            expected = h.state
        elif h.exp <= m.now:
            expected = "expired"
        elif any(m.seat[s] != hid for s in h.seats):
            expected = "seat_lost"  # pragma: no cover - a live hold keeps its seats
        else:
            expected = "ok"
        hold = self.run(self.store.get_hold(hid))
        try:
            self.run(self.store.lock_for_payment(hold, m.now, window))
            outcome = "ok"
        except errors.HoldAlreadySold:
            outcome = "sold"
        except errors.HoldReleased:
            outcome = "released"
        except errors.HoldExpired:
            outcome = "expired"
        except errors.HoldSeatLost:
            outcome = "seat_lost"
        assert outcome == expected
        event(f"outcome: {outcome}")
        if outcome == "ok":
            h.before = hold.expires_ms
            h.state = "locked"
            h.exp = max(h.exp, m.now + window)

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data())
    def unlock_after_failed_payment(self, data: st.DataObject) -> None:
        """A charge failed: a locked hold goes back to held with its pre-lock expiry (never longer)."""
        m = self.model
        hid = data.draw(st.sampled_from(sorted(m.holds)))
        h = m.holds[hid]
        hold = self.run(self.store.get_hold(hid))
        before = h.before if h.state == "locked" else hold.expires_ms
        held = hold if h.state != "locked" else msgspec.structs.replace(hold, expires_ms=before)
        result = self.run(self.store.unlock_after_failed_payment(held))
        if h.state != "locked":
            assert result is None
            return
        assert result == min(h.exp, before)
        h.state = "held"
        h.exp = min(h.exp, before)

    @precondition(lambda self: any(self.model.live(h) and self.model.holds[h].state == "locked"
                                   for h in self.model.holds))
    @rule(data=st.data())
    def confirm_sold(self, data: st.DataObject) -> None:
        """What a purchase does after its PostgreSQL commit: only for a hold it locked, still live."""
        m = self.model
        hid = data.draw(st.sampled_from(sorted(h for h in m.holds if m.live(h) and m.holds[h].state == "locked")))
        h = m.holds[hid]
        hold = self.run(self.store.get_hold(hid))
        assert self.run(self.store.confirm_sold(hold, m.now)) == []
        for s in h.seats:
            m.seat[s] = "sold"
        if h.kind == "g":
            m.ga_sold += h.qty
        if h.adm is not None:
            m.bindings[h.adm][1] += h.qty  # type: ignore[operator]
        h.state = "sold"
        if m.user_marker.get(h.user) == hid:
            del m.user_marker[h.user]

    @rule(ms=st.integers(min_value=0, max_value=1_500))
    def advance_clock(self, ms: int) -> None:
        self.model.now += ms

    @rule()
    def sweep(self) -> None:
        m = self.model
        expected = sum(1 for h in m.holds.values() if h.state in ("held", "locked") and h.exp <= m.now)
        m.reclaim_all_expired()
        result = self.run(self.store.sweep_expired(EVENT, m.now, 500))
        assert result.reclaimed == expected and not result.more

    # ------------------------------------------------------------ invariants
    @invariant()
    def redis_matches_the_model(self) -> None:
        m = self.model
        keys = self.store.keys
        raw_seats = {k.decode(): v.decode() for k, v in
                     self.run(self.redis.hgetall(keys.inventory_seats(EVENT))).items()}
        if not raw_seats:
            return  # before @initialize
        for s, v in raw_seats.items():
            mv = m.seat[s]
            if mv == "free":
                assert v == "0", (s, v)
            elif mv == "sold":
                assert v == "s", (s, v)
            else:
                assert v == f"{mv}:{m.holds[mv].exp}", (s, v, mv)  # type: ignore[index]
        counts = self.run(self.store.tier_counts(EVENT))
        assert counts is not None
        for tier in ("A", "B"):
            assert counts[tier].free == sum(1 for s, t in SEATS.items() if t == tier and raw_seats[s] == "0")
            assert counts[tier].sold == sum(1 for s, t in SEATS.items() if t == tier and raw_seats[s] == "s")
        assert counts["G"].free == m.ga_counter()
        assert counts["G"].sold == m.ga_sold <= GA_CAPACITY

    @invariant()
    def no_seat_in_two_live_holds_and_one_live_hold_per_user(self) -> None:
        m = self.model
        owners: dict[str, str] = {}
        users: set[str] = set()
        for hid in m.holds:
            stored = self.run(self.store.get_hold(hid))
            assert stored.state == m.holds[hid].state, (hid, stored.state, m.holds[hid].state)
            assert stored.admission == m.holds[hid].adm
            if stored.is_live(m.now):
                assert stored.user_id not in users
                users.add(stored.user_id)
                for s in stored.seats:
                    assert s not in owners, f"{s} in {owners[s]} and {hid}"
                    owners[s] = hid
        assert sum(1 for t in SEATS.values() if t) == len(SEATS)

    @invariant()
    def an_admission_is_one_users_and_within_the_limit(self) -> None:
        m = self.model
        keys = self.store.keys
        for jti in ADMISSIONS:
            if jti is None:
                continue
            raw = self.run(self.redis.hgetall(keys.admission_binding(EVENT, jti)))
            if jti not in m.bindings:
                assert raw == {}
                continue
            owner, bought = m.bindings[jti]
            assert raw == {b"u": str(owner).encode(), b"n": str(bought).encode()}
            held = sum(h.qty for hid, h in m.holds.items() if h.adm == jti and m.live(hid) and h.state != "sold")
            assert bought + held <= MAX_PER_ORDER  # type: ignore[operator]
            assert all(h.user == owner for h in m.holds.values() if h.adm == jti)


HoldScripts.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_hold_scripts_against_the_model = HoldScripts.TestCase
