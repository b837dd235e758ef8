"""hold_for_offer.lua through the HoldStore: a waiting-list offer's hold on a sold-out event, its
refusals (each writing nothing), and its expiry at the claim deadline (the tickets come back)."""

from __future__ import annotations

import pytest
import redis.asyncio as redis_asyncio

from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from ticketing.holds.errors import EventNotOnSale, InventoryNotLoaded
from ticketing.holds.store import HoldStore
from ticketing.holds.types import InventoryMeta, StagedTier

EV = "21"
NOW = 1_900_000_000_000
CLAIM_MS = 900_000


@pytest.fixture
async def store(redis_client: redis_asyncio.Redis, redis_prefix: str) -> HoldStore:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    store = HoldStore(RedisCalls.batched(redis_client, scripts), RedisKeys(redis_prefix))
    meta = InventoryMeta(status="on_sale", currency="EUR", max_per_order=4, hold_ttl_ms=60_000)
    await store.load(EV, meta, [StagedTier(code="G", price=2000, capacity=3, sold=0, general_admission=True)], [],
                     "g1")
    return store


async def _snapshot(client: redis_asyncio.Redis, store: HoldStore) -> dict[str, object]:
    k = store.keys
    return {"tiers": await client.hgetall(k.inventory_tiers(EV)), "rec": await client.hgetall(k.hold_records(EV)),
            "users": await client.hgetall(k.hold_users(EV)), "expiry": await client.zrange(k.hold_expiry(EV), 0, -1)}


async def test_an_offer_hold_is_refused_to_a_fan_holding_tickets_and_writes_nothing(
        store: HoldStore, redis_client: redis_asyncio.Redis) -> None:
    mine = await store.hold_general_admission(EV, f"{EV}-{1:024x}", "fan", "G", 1, NOW, admitted=True)
    await store.update_meta(EV, {"status": "sold_out"})
    before = await _snapshot(redis_client, store)
    held = await store.hold_for_offer(EV, f"{EV}-{2:024x}", "fan", "o1", wanted=1, now_ms=NOW,
                                      expires_ms=NOW + CLAIM_MS, tiers=["G"])
    assert (held.hold, held.refusal) == (None, "active_hold")
    assert await _snapshot(redis_client, store) == before
    assert (await store.get_hold(mine.id)).offer is None  # an ordinary hold carries no offer


async def test_an_unloaded_inventory_is_reported(store: HoldStore) -> None:
    with pytest.raises(InventoryNotLoaded):
        await store.hold_for_offer("999", "999-" + "0" * 24, "fan", "o1", wanted=1, now_ms=NOW,
                                   expires_ms=NOW + CLAIM_MS, tiers=["G"])


async def test_an_offer_hold_lasts_until_its_claim_deadline_then_its_tickets_come_back(
        store: HoldStore, redis_client: redis_asyncio.Redis) -> None:
    await store.update_meta(EV, {"status": "sold_out"})
    with pytest.raises(EventNotOnSale):  # an ordinary hold is refused on a sold-out event
        await store.hold_general_admission(EV, f"{EV}-{3:024x}", "skipper", "G", 1, NOW, admitted=True)
    held = await store.hold_for_offer(EV, f"{EV}-{4:024x}", "fan", "o1", wanted=2, now_ms=NOW,
                                      expires_ms=NOW + CLAIM_MS, tiers=["G"])
    hold = held.hold
    assert hold is not None and (hold.quantity, hold.total, hold.expires_ms, hold.offer) == (2, 4000, NOW + CLAIM_MS,
                                                                                           "o1")
    assert (await store.tier_counts(EV))["G"].free == 1  # type: ignore[index]
    await store.sweep_expired(EV, NOW + CLAIM_MS - 1)
    assert (await store.get_hold(hold.id)).state == "held"  # still within the claim window
    await store.sweep_expired(EV, NOW + CLAIM_MS)
    assert (await store.get_hold(hold.id)).state == "expired"
    assert (await store.tier_counts(EV))["G"].free == 3  # type: ignore[index]
    assert await store.peek_expired(EV) != []  # announced as BookingExpired like any expired hold
