"""Hypothesis: hold_for_offer.lua's arithmetic against a Python model, on the real Redis through the
HoldStore. General admission: the tier held is the first (in the order given) with every wanted
ticket free, else the one with most free (the first of equals); it holds min(wanted, that free);
only that tier's free counter moves, by exactly that; the total is price x quantity. Seats: the
first ``wanted`` candidates that are free (an expired hold's seat counts as free) are held, in
the candidates' order; each free counter drops by the seats of its tier that were counted free.
Nothing is written when nothing is free or the event is not sold out."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import redis.asyncio as redis_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from ticketing.holds.store import HoldStore
from ticketing.holds.types import InventoryMeta, StagedTier

EVENT = "11"
NOW = 1_900_000_000_000
EXPIRES = NOW + 900_000
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _store() -> tuple[HoldStore, redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(os.environ.get("STAGEDOOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    scripts = LuaScripts(client)
    await scripts.load_all()
    return HoldStore(RedisCalls.batched(client, scripts), RedisKeys("op" + uuid.uuid4().hex[:10])), client


async def _cleanup(store: HoldStore, client: redis_asyncio.Redis) -> None:
    keys = [k async for k in client.scan_iter(match=f"{store.keys.prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def expected_tier(free: list[int], wanted: int) -> int | None:
    for i, f in enumerate(free):
        if f >= wanted:
            return i
    best = max(free)
    return None if best == 0 else free.index(best)


@PROPERTY_SETTINGS
@given(free=st.lists(st.integers(0, 6), min_size=1, max_size=4), wanted=st.integers(1, 6),
       prices=st.lists(st.integers(0, 10_000), min_size=4, max_size=4), sold_out=st.booleans())
def test_general_admission_offers_what_the_model_says(free: list[int], wanted: int, prices: list[int],
                                                     sold_out: bool) -> None:
    async def check() -> None:
        store, client = await _store()
        try:
            codes = [f"T{i}" for i in range(len(free))]
            tiers = [StagedTier(code=c, price=prices[i], capacity=6, sold=6 - free[i], general_admission=True)
                     for i, c in enumerate(codes)]
            status = "sold_out" if sold_out else "on_sale"
            await store.load(EVENT, InventoryMeta(status=status, currency="EUR", max_per_order=6,
                                                  hold_ttl_ms=60_000), tiers, [], "g1")
            held = await store.hold_for_offer(EVENT, f"{EVENT}-{1:024x}", "u1", "offer-1", wanted=wanted, now_ms=NOW,
                                              expires_ms=EXPIRES, tiers=codes)
            after = await store.tier_counts(EVENT)
            assert after is not None
            choice = expected_tier(free, wanted)
            if not sold_out or choice is None:
                assert held.hold is None and held.refusal == ("not_sold_out" if not sold_out else "none_free")
                assert [after[c].free for c in codes] == free
                return
            qty = min(wanted, free[choice])
            hold = held.hold
            assert hold is not None
            assert (hold.tier, hold.quantity, hold.total, hold.offer) == (codes[choice], qty, prices[choice] * qty,
                                                                          "offer-1")
            assert [after[c].free for c in codes] == [f - (qty if i == choice else 0) for i, f in enumerate(free)]
            assert await store.get_hold(hold.id) == hold  # the record reads back as the store answered
        finally:
            await _cleanup(store, client)

    run(check())


SEAT_STATES = st.sampled_from(["free", "sold", "held", "expired"])


@PROPERTY_SETTINGS
@given(states=st.lists(SEAT_STATES, min_size=1, max_size=8), wanted=st.integers(1, 6), data=st.data())
def test_seats_offer_the_first_free_candidates(states: list[str], wanted: int, data: st.DataObject) -> None:
    seats = [f"s{i + 1}" for i in range(len(states))]
    seat_tier = {s: ("A" if i % 2 == 0 else "B") for i, s in enumerate(seats)}
    candidates = data.draw(st.permutations(seats))

    async def check() -> None:
        store, client = await _store()
        try:
            tiers = [StagedTier(code="A", price=700, capacity=0, sold=0, general_admission=False),
                     StagedTier(code="B", price=300, capacity=0, sold=0, general_admission=False)]
            await store.load(EVENT, InventoryMeta(status="on_sale", currency="EUR", max_per_order=6,
                                                  hold_ttl_ms=60_000),
                             tiers, [(s, seat_tier[s], st_ == "sold") for s, st_ in zip(seats, states, strict=True)],
                             "g1")
            n = 0
            for s, state in zip(seats, states, strict=True):  # holds by others: live, or expired by NOW
                if state in ("held", "expired"):
                    n += 1
                    await store.hold_seats(EVENT, f"{EVENT}-{1000 + n:024x}", f"other{n}", [s],
                                           NOW - (60_000 if state == "expired" else 1000), admitted=True)
            await store.update_meta(EVENT, {"status": "sold_out"})
            before = await store.tier_counts(EVENT)
            assert before is not None
            state_of = dict(zip(seats, states, strict=True))
            takeable = [s for s in candidates if state_of[s] in ("free", "expired")]
            # expired holds are reclaimed first, so their seats count free from then on
            taken = takeable[:wanted]
            held = await store.hold_for_offer(EVENT, f"{EVENT}-{1:024x}", "u1", "offer-1", wanted=wanted, now_ms=NOW,
                                              expires_ms=EXPIRES, seats=candidates)
            after = await store.tier_counts(EVENT)
            assert after is not None
            reclaimed = {t: sum(1 for s in seats if state_of[s] == "expired" and seat_tier[s] == t) for t in "AB"}
            if not taken:
                assert held.hold is None and held.refusal == "none_free"
                assert {t: after[t].free for t in "AB"} == {t: before[t].free + reclaimed[t] for t in "AB"}
                return
            hold = held.hold
            assert hold is not None
            assert hold.seats == taken
            assert hold.total == sum(700 if seat_tier[s] == "A" else 300 for s in taken)
            for t in "AB":
                assert after[t].free == before[t].free + reclaimed[t] - sum(1 for s in taken if seat_tier[s] == t)
            seat_map, _ = await store.seat_states(EVENT, NOW)
            assert seat_map is not None
            assert all(seat_map[s] == "held" for s in taken)
        finally:
            await _cleanup(store, client)

    run(check())
