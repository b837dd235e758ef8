"""The live seat map is served from memory for a moment (ticketing/catalog/seat_map_cache.py): never past
this process's own writes, never past a shown hold's expiry, and other processes' writes show
within STAGEDOOR_SEAT_MAP_CACHE_MS."""

from __future__ import annotations

from typing import Any

from stagedoor.clock import ManualClock
from stagedoor.redis_calls import RedisCalls
from stagedoor.web import CALLS, KEYS, REDIS
from ticketing.catalog.seat_map_cache import SeatMapCache
from ticketing.holds.store import HoldStore


async def _states(client: Any, event_id: str) -> dict[str, str]:
    resp = await client.get(f"/api/events/{event_id}/seats")
    assert resp.status == 200
    return {s["id"]: s["state"] for s in (await resp.json())["seats"]}


async def test_this_process_writes_show_at_once(clocked_client, make_event, create_user) -> None:
    client = await clocked_client()
    event = await make_event(client, hold_ttl_s=30)
    fan = await create_user()
    assert (await _states(client, event["id"]))["s1"] == "free"  # now cached
    resp = await client.post(f"/api/events/{event['id']}/holds", json={"seats": ["s1"]}, headers=fan.headers)
    assert resp.status == 201
    hold = await resp.json()
    assert (await _states(client, event["id"]))["s1"] == "held"  # the hold was this process's write
    released = await client.delete(f"/api/holds/{hold['hold_id']}", headers=fan.headers)
    assert released.status in (200, 204)
    assert (await _states(client, event["id"]))["s1"] == "free"


async def test_a_cancel_in_this_process_drops_the_cached_map(clocked_client, make_event) -> None:
    client = await clocked_client()
    event = await make_event(client)
    assert set((await _states(client, event["id"])).values()) == {"free"}  # cached
    resp = await client.delete(f"/api/events/{event['id']}", headers=event["_organizer"].headers)
    assert resp.status == 200, await resp.text()
    assert set((await _states(client, event["id"])).values()) == {"sold"}  # nothing is for sale any more


async def test_a_cached_map_never_outlives_a_shown_hold(clocked_client, make_event, create_user,
                                                        manual_clock: ManualClock) -> None:
    client = await clocked_client()
    event = await make_event(client, hold_ttl_s=30)
    fan = await create_user()
    resp = await client.post(f"/api/events/{event['id']}/holds", json={"seats": ["s1"]}, headers=fan.headers)
    assert resp.status == 201
    assert (await _states(client, event["id"]))["s1"] == "held"  # cached until the hold's expiry at most
    manual_clock.advance(29_999)
    assert (await _states(client, event["id"]))["s1"] == "held"
    manual_clock.advance(1)
    assert (await _states(client, event["id"]))["s1"] == "free"


async def test_another_process_hold_shows_within_the_cache_age(clocked_client, make_event, settings,
                                                               manual_clock: ManualClock) -> None:
    client = await clocked_client()
    event = await make_event(client, hold_ttl_s=60)
    app = client.server.app
    assert (await _states(client, event["id"]))["s2"] == "free"  # cached by this process
    other = HoldStore(RedisCalls.batched(app[REDIS], app[CALLS].scripts), app[KEYS])  # as in a second process
    await other.hold_seats(event["id"], f"{event['id']}-other", "u-other", ["s2"], manual_clock.now_ms(),
                           admitted=True)
    manual_clock.advance(settings.seat_map_cache_ms - 1)
    assert (await _states(client, event["id"]))["s2"] == "free"  # the bounded lag this cache allows
    manual_clock.advance(1)
    assert (await _states(client, event["id"]))["s2"] == "held"


def test_cache_entries_follow_version_expiry_and_age() -> None:
    cache: SeatMapCache[str] = SeatMapCache(max_age_ms=500)
    cache.put(1, version=3, read_at_ms=1000, earliest_expiry_ms=1200, value="map")
    assert cache.get(1, 3, 1199) == "map"
    assert cache.get(1, 3, 1200) is None  # a shown hold expired
    assert cache.get(1, 4, 1100) is None  # a write finished after the read
    cache.put(1, version=4, read_at_ms=1000, earliest_expiry_ms=None, value="map2")
    assert cache.get(1, 4, 1499) == "map2" and cache.get(1, 4, 1500) is None  # max age
    off: SeatMapCache[str] = SeatMapCache(max_age_ms=0)
    off.put(1, version=0, read_at_ms=0, earliest_expiry_ms=None, value="x")
    assert off.get(1, 0, 0) is None
