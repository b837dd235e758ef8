"""The queue scripts through their store, with an explicit clock (no sleeping)."""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from rooms.queue_store import QueueStore
from stagedoor.embedded import EmbeddedRedis
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from tests.support.rooms import T0, Stores, room_config


async def _dump(stores: Stores, room: str) -> dict[bytes, Any]:
    keys = [k async for k in stores.redis.scan_iter(match=stores.keys.room_tag(room).replace("{", "\\{")
                                                    .replace("}", "\\}") + "*")]
    return {k: await stores.redis.dump(k) for k in sorted(keys)}


async def test_fifo_no_visitor_is_admitted_before_anyone_who_joined_earlier(stores: Stores, make_room: Any) -> None:
    await make_room(rate_per_s=7, max_active=10_000)
    joined = [(await stores.join("r1", T0 + 1000 + i)).visitor_id for i in range(60)]
    # the first few are admitted at join (the bucket filled before anyone came), in join order
    admitted: list[str] = sorted(await stores.active_ids("r1"), key=joined.index)
    assert 0 < len(admitted) < 10
    now = T0 + 2000
    while len(admitted) < 60:
        now += 130
        before = set(await stores.active_ids("r1"))
        result = await stores.tick("r1", now)
        assert result.outcome == "ok"
        new = [v for v in await stores.active_ids("r1") if v not in before]
        # within one tick, admissions follow the queue order as well
        admitted += sorted(new, key=joined.index)
        waiting = await stores.waiting_ids("r1")
        assert all(joined.index(a) < joined.index(w) for a in admitted for w in waiting[:1])
    assert admitted == joined


async def test_rejoining_keeps_the_original_position(stores: Stores, make_room: Any) -> None:
    await make_room()
    first = await stores.join("r1", T0 + 10)
    second = await stores.join("r1", T0 + 20)
    again = await stores.join("r1", T0 + 30, first.visitor_id)
    assert (again.outcome, again.created, again.position) == ("waiting", False, 1)
    assert again.visitor_id == first.visitor_id
    assert (await stores.queue.status("r1", second.visitor_id, T0 + 40)).position == 2
    assert await stores.redis.zcard(stores.keys.room_waiting("r1")) == 2


async def test_a_live_only_rejoin_keeps_a_live_place_and_writes_nothing_for_a_gone_one(
        stores: Stores, make_room: Any) -> None:
    # what the waiting room asks before requiring proof of work of a token: a live place answers
    # as usual; a gone one (dropped, session over) says "not_live" and leaves Redis untouched,
    # after the room's own refusals (closed, sold out, not open) and the eviction check
    await make_room(rate_per_s=1, max_active=10)
    first = await stores.join("r1", T0 + 10)
    second = await stores.join("r1", T0 + 20)
    live = await stores.join("r1", T0 + 30, first.visitor_id, live_only=True)
    assert (live.outcome, live.created, live.position) == ("waiting", False, 1)
    assert (await stores.tick("r1", T0 + 1_500)).admitted == 1  # the first becomes a shopper
    shopper = await stores.join("r1", T0 + 1_600, first.visitor_id, live_only=True)
    assert (shopper.outcome, shopper.created) == ("admitted", False)
    assert await stores.queue.finish("r1", first.visitor_id, T0 + 1_700)  # the session is over
    await stores.redis.zrem(stores.keys.room_waiting("r1"), second.visitor_id)  # dropped as abandoned
    before = await _dump(stores, "r1")
    for gone in (first.visitor_id, second.visitor_id):
        result = await stores.join("r1", T0 + 1_800, gone, live_only=True)
        assert (result.outcome, result.created, result.visitor_id) == ("not_live", False, gone)
    assert await _dump(stores, "r1") == before
    back = await stores.join("r1", T0 + 1_900, second.visitor_id)  # with a solution: a new place, same id
    assert (back.outcome, back.created, back.visitor_id, back.position) == ("waiting", True, second.visitor_id, 1)
    await stores.queue.evict("r1", first.visitor_id)
    assert (await stores.join("r1", T0 + 2_000, first.visitor_id, live_only=True)).outcome == "evicted"
    await make_room(mode="closed")
    assert (await stores.join("r1", T0 + 2_100, "9_abcdef", live_only=True)).outcome == "closed"


async def test_waiting_lengths_count_each_rooms_queue_in_order(stores: Stores, make_room: Any) -> None:
    await make_room("r1")
    await make_room("r2")
    for i in range(3):
        await stores.join("r1", T0 + 10 + i)
    await stores.join("r2", T0 + 20)
    assert await stores.queue.waiting_lengths(["r2", "r1", "nobody"]) == [1, 3, 0]
    assert await stores.queue.waiting_lengths([]) == []
    assert await stores.rooms.room_ids() == ["r1", "r2"]


async def test_pre_queue_visitors_all_precede_later_arrivals(stores: Stores, make_room: Any) -> None:
    await make_room(starts_at_ms=T0)
    early = {(await stores.join("r1", T0 - 5000 + i)).visitor_id for i in range(30)}
    status = await stores.queue.status("r1", next(iter(early)), T0 - 1)
    assert (status.state, status.position) == ("pre_queue", 0)
    late = [(await stores.join("r1", T0 + 10 + i)).visitor_id for i in range(10)]
    order = await stores.waiting_ids("r1")
    assert set(order[:30]) == early
    assert order[30:] == late


CHI2_Z = 4.753  # one-sided normal quantile for alpha = 1e-6: a false failure once in a million runs


def chi2_critical(df: int, z: float = CHI2_Z) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile."""
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3


async def test_pre_queue_shuffle_is_a_uniform_random_permutation(stores: Stores, make_room: Any) -> None:
    """4 visitors join in a fixed order before the start, in 1,200 independent rooms: each of
    the 24 orders must come up about equally often (chi-square, alpha 1e-6), and the first
    visitor to arrive must be first no more often than chance."""
    n, trials = 4, 1200
    counts: Counter[tuple[int, ...]] = Counter()
    for t in range(trials):
        room = f"s{t}"
        await stores.rooms.put(room_config(room, starts_at_ms=T0), T0 - 10_000)
        ids = [(await stores.join(room, T0 - 1000 + i)).visitor_id for i in range(n)]
        order = await stores.waiting_ids(room)
        counts[tuple(ids.index(v) for v in order)] += 1
    expected = trials / math.factorial(n)
    chi2 = sum((counts.get(p, 0) - expected) ** 2 / expected for p in permutations(range(n)))
    assert chi2 < chi2_critical(math.factorial(n) - 1), (chi2, counts)
    first_is_first = sum(c for p, c in counts.items() if p[0] == 0)
    sd = math.sqrt(trials * (1 / n) * (1 - 1 / n))
    assert abs(first_is_first - trials / n) < CHI2_Z * sd


async def test_lottery_orders_every_entrant_randomly(stores: Stores, make_room: Any) -> None:
    await make_room(mode="lottery")
    ids = [(await stores.join("r1", T0)).visitor_id for i in range(40)]
    order = await stores.waiting_ids("r1")
    assert sorted(order) == sorted(ids) and order != ids  # 1/40! chance of a false failure


async def test_max_active_is_never_exceeded_and_capacity_is_freed_by_finish_and_ttl(stores: Stores,
                                                                                     make_room: Any) -> None:
    await make_room(rate_per_s=1000, max_active=5, session_ttl_s=60)
    ids = [(await stores.join("r1", T0)).visitor_id for i in range(12)]
    result = await stores.tick("r1", T0 + 1000)
    assert (result.admitted, result.active, result.waiting) == (5, 5, 7)
    assert (await stores.tick("r1", T0 + 2000)).admitted == 0
    assert await stores.queue.finish("r1", ids[0], T0 + 2100)
    assert not await stores.queue.finish("r1", ids[0], T0 + 2100)  # already finished
    assert not await stores.queue.finish("r1", ids[8], T0 + 2100)  # never admitted
    result = await stores.tick("r1", T0 + 2200)
    assert (result.admitted, result.active) == (1, 5)
    assert await stores.active_ids("r1") == ids[1:6]
    # sessions of the first batch end at T0 + 61_000: capacity comes back without any finish
    result = await stores.tick("r1", T0 + 61_001)
    assert (result.sessions_expired, result.admitted, result.active) == (4, 4, 5)
    status = await stores.queue.status("r1", ids[1], T0 + 61_002)
    assert status.state == "expired"


async def test_abandoned_visitors_are_skipped_without_using_an_admission(stores: Stores, make_room: Any) -> None:
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=30, starts_at_ms=T0 + 60_000)
    ids = [(await stores.join("r1", T0 + i)).visitor_id for i in range(6)]
    for v in ids[3:]:  # only the last three keep polling
        for t in range(5_000, 60_000, 5_000):
            await stores.queue.status("r1", v, T0 + t)
    result = await stores.tick("r1", T0 + 61_000)
    assert (result.admitted, result.abandoned) == (3, 3)
    assert sorted(await stores.active_ids("r1")) == sorted(ids[3:])
    assert await stores.redis.hget(stores.keys.room_state("r1"), "abandoned_total") == b"3"
    assert (await stores.queue.status("r1", ids[0], T0 + 61_000)).state == "expired"


async def test_a_visitor_polling_within_abandon_after_is_never_dropped(stores: Stores, make_room: Any) -> None:
    await make_room(rate_per_s=1, abandon_after_s=30)
    v = (await stores.join("r1", T0 + 1)).visitor_id
    await stores.join("r1", T0 + 2)
    await stores.queue.status("r1", v, T0 + 10_000)
    result = await stores.tick("r1", T0 + 39_999)  # 29.999 s after the last poll
    assert (result.admitted, result.abandoned) == (1, 0)


async def _poll(stores: Stores, visitors: list[str], start_ms: int, end_ms: int, every_ms: int = 5_000) -> None:
    for t in range(start_ms, end_ms, every_ms):
        for v in visitors:
            await stores.queue.status("r1", v, t)


async def test_an_outage_longer_than_abandon_after_drops_nobody(stores: Stores, make_room: Any) -> None:
    # Redis (or the waiting room) down for 90 s, 3x abandon_after_s: nobody's heartbeat could be
    # written. Every visitor was polling before; the first tick after it must not take them all
    # for closed tabs
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=30, starts_at_ms=T0 + 600_000)
    ids = [(await stores.join("r1", T0 + i)).visitor_id for i in range(3)]
    await _poll(stores, ids, T0 + 5_000, T0 + 30_000)
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=30, starts_at_ms=T0 + 100_000)
    outage_ends = T0 + 120_000
    result = await stores.tick("r1", outage_ends)
    assert (result.admitted, result.abandoned, result.unheard, result.waiting) == (0, 0, 1, 3)
    # the pages poll through the outage (503s): once they are heard again, they are admitted
    await _poll(stores, ids, outage_ends + 500, outage_ends + 1_000)
    result = await stores.tick("r1", outage_ends + 1_000)
    assert (result.admitted, result.abandoned, result.unheard) == (3, 0, 0)
    assert sorted(await stores.active_ids("r1")) == sorted(ids)
    assert await stores.redis.hget(stores.keys.room_state("r1"), "abandoned_total") is None


async def test_after_an_outage_an_unheard_visitor_holds_the_line_until_the_window_is_heard(
        stores: Stores, make_room: Any) -> None:
    # the first in line closed the tab during the outage; the two behind keep polling. FIFO: they
    # are not admitted past them; the silent one is dropped once a whole abandon_after_s has been
    # heard (30 s of the others' heartbeats), not before
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=30, starts_at_ms=T0 + 600_000)
    for i in range(3):
        await stores.join("r1", T0 + i)
    ids = await stores.waiting_ids("r1")  # in line order (joined before the start: shuffled)
    await _poll(stores, ids, T0 + 5_000, T0 + 30_000)
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=30, starts_at_ms=T0 + 100_000)
    back = T0 + 120_000
    for t in range(back, back + 35_000, 5_000):
        await _poll(stores, ids[1:], t, t + 1)
        result = await stores.tick("r1", t + 1)
        if t + 1 - back < 30_000:  # the window still reaches into the outage
            assert (result.admitted, result.abandoned, result.unheard) == (0, 0, 1), t - back
            assert await stores.waiting_ids("r1") == ids
        else:
            assert (result.admitted, result.abandoned, result.unheard) == (2, 1, 0), t - back
            break
    else:
        raise AssertionError("the silent visitor was never judged")
    assert sorted(await stores.active_ids("r1")) == sorted(ids[1:])
    assert (await stores.queue.status("r1", ids[0], back + 40_000)).state == "expired"


async def test_silence_with_the_waiting_room_up_drops_nobody_and_a_fan_heard_through_a_window_ends_it(
        stores: Stores, make_room: Any) -> None:
    # the waiting room is up and Redis writable all along, but no fan reaches it for 100 s
    # (abandon_after_s 30): an ingress or CDN outage looks exactly like this, so the closed tab at
    # the front is not judged. A newcomer heard through a whole window ends it: the closed tab is
    # dropped then, not before
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=30, starts_at_ms=T0 + 600_000)
    await stores.join("r1", T0)
    (closed_tab,) = await stores.waiting_ids("r1")
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=30, starts_at_ms=T0 + 1_000)
    for t in range(T0 + 40_000, T0 + 100_000, 1_000):  # its join's bit has left the window
        result = await stores.tick("r1", t)
        assert (result.admitted, result.abandoned) == (0, 0)
    assert result.unheard == 1 and await stores.waiting_ids("r1") == [closed_tab]
    newcomer = (await stores.join("r1", T0 + 100_000)).visitor_id  # behind the closed tab
    for t in range(T0 + 100_000, T0 + 140_000, 5_000):
        await stores.queue.status("r1", newcomer, t)
        result = await stores.tick("r1", t + 1)
        if t + 1 - (T0 + 100_000) < 30_000:  # the window still reaches into the silence
            assert (result.admitted, result.abandoned, result.unheard) == (0, 0, 1), t - T0
        else:
            assert (result.admitted, result.abandoned, result.unheard) == (1, 1, 0), t - T0
            break
    else:
        raise AssertionError("the closed tab was never judged")
    assert (await stores.queue.status("r1", closed_tab, T0 + 140_002)).state == "expired"
    assert await stores.active_ids("r1") == [newcomer]


async def test_only_visitors_heartbeats_make_a_bucket_heard(stores: Stores, make_room: Any) -> None:
    # a status read of a visitor who is not waiting (admitted, gone, unknown) writes nothing: no
    # bitmap, so no heard bucket; a waiting visitor's poll sets their bit and nobody else's
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=30, starts_at_ms=T0 + 600_000)
    seen = stores.keys.room_seen("r1", (T0 + 10_000) // 5_000)
    for nobody in ("1_000000", "zz_ffffff"):
        assert (await stores.queue.status("r1", nobody, T0 + 10_000)).state == "expired"
    assert not await stores.redis.exists(seen)
    visitor = (await stores.join("r1", T0)).visitor_id
    assert visitor.split("_")[0] != "0"  # sequence numbers start at 1
    await stores.queue.status("r1", visitor, T0 + 10_000)
    assert await stores.redis.bitcount(seen) == 1 and await stores.redis.getbit(seen, int(visitor.split("_")[0], 36))
    assert 0 < await stores.redis.pttl(seen) <= 30_000 + 2 * 5_000  # the window, and two buckets more


async def test_the_controller_counts_ticks_held_at_an_unheard_visitor(stores: Stores, make_room: Any,
                                                                       make_settings: Any) -> None:
    from admission.controller import AdmissionController
    from admission.metrics import AdmissionMetrics
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=30, starts_at_ms=T0 - 1)
    assert (await stores.join("r1", T0)).outcome == "waiting"  # the token bucket starts empty
    now = [(T0 + 100_000) / 1000]  # 100 s of silence: an outage, as far as the room can tell
    metrics = AdmissionMetrics()
    controller = AdmissionController(make_settings(redis_key_prefix=stores.keys.prefix), stores.rooms, stores.queue,
                                     metrics, clock=lambda: now[0])
    results = await controller.tick()
    assert (results["r1"].admitted, results["r1"].abandoned, results["r1"].unheard) == (0, 0, 1)
    assert metrics.registry.get_sample_value("admission_unheard_stops_total", {"room": "r1"}) == 1
    assert metrics.registry.get_sample_value("admission_waiting_visitors", {"room": "r1"}) == 1


async def test_a_heard_window_still_drops_the_silent(stores: Stores, make_room: Any) -> None:
    # no outage: others polled through every bucket of the window, so silence is absence
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=15, starts_at_ms=T0 + 600_000)
    for i in range(4):
        await stores.join("r1", T0 + i)
    ids = await stores.waiting_ids("r1")
    await _poll(stores, ids[2:], T0 + 5_000, T0 + 60_000)
    await make_room(rate_per_s=100, max_active=100, abandon_after_s=15, starts_at_ms=T0 + 50_000)
    result = await stores.tick("r1", T0 + 56_000)
    assert (result.admitted, result.abandoned, result.unheard) == (2, 2, 0)


async def test_immediate_admission_when_nobody_waits(stores: Stores, make_room: Any) -> None:
    await make_room(rate_per_s=2, max_active=10)
    first = await stores.join("r1", T0 + 5000)  # the bucket filled up while nobody came
    assert (first.outcome, first.expiry_ms) == ("admitted", T0 + 5000 + 600_000)
    second = await stores.join("r1", T0 + 5001)  # bucket empty now (burst 1): a queue forms
    assert (second.outcome, second.position) == ("waiting", 1)
    third = await stores.join("r1", T0 + 10_000)  # someone waits: no overtaking
    assert (third.outcome, third.position) == ("waiting", 2)


async def test_passthrough_admits_everyone_at_once(stores: Stores, make_room: Any) -> None:
    await make_room(mode="passthrough", rate_per_s=1, max_active=1)
    outcomes = [(await stores.join("r1", T0 + 1)).outcome for _ in range(5)]
    assert outcomes == ["admitted"] * 5


@pytest.mark.parametrize(("overrides", "now", "outcome"), [
    ({"mode": "closed"}, T0 + 1, "closed"),
    ({"closes_at_ms": T0 + 100}, T0 + 100, "closed"),
    ({"opens_at_ms": T0 + 100, "starts_at_ms": T0 + 200}, T0 + 99, "not_open"),
])
async def test_refused_joins_write_nothing(stores: Stores, make_room: Any, overrides: dict[str, Any], now: int,
                                           outcome: str) -> None:
    await make_room(**overrides)
    before = await _dump(stores, "r1")
    result = await stores.join("r1", now)
    assert result.outcome == outcome
    assert await _dump(stores, "r1") == before


async def test_unknown_room(stores: Stores) -> None:
    assert (await stores.join("nope", T0)).outcome == "no_room"
    assert (await stores.tick("nope", T0)).outcome == "no_room"
    assert [k async for k in stores.redis.scan_iter(match=f"{stores.keys.prefix}:*")] == []


async def test_paused_room_admits_nobody_and_keeps_the_order(stores: Stores, make_room: Any) -> None:
    await make_room(paused=True, rate_per_s=100)
    ids = [(await stores.join("r1", T0 + 1 + i)).visitor_id for i in range(3)]
    assert (await stores.tick("r1", T0 + 5000)).outcome == "idle"
    assert await stores.waiting_ids("r1") == ids


async def test_sold_out_reaches_every_waiting_visitor_and_stops_admission(stores: Stores, make_room: Any) -> None:
    from rooms.sessions import mark_sold_out

    await make_room(rate_per_s=1)
    ids = [(await stores.join("r1", T0)).visitor_id for i in range(50)]
    await mark_sold_out(stores.calls, stores.keys, "r1", T0 + 100)
    states = {(await stores.queue.status("r1", v, T0 + 101)).state for v in ids}
    assert states == {"sold_out"}
    assert (await stores.tick("r1", T0 + 10_000)).admitted == 0
    assert (await stores.join("r1", T0 + 10_001)).outcome == "sold_out"
    assert (await stores.join("r1", T0 + 10_002, ids[0])).outcome == "sold_out"  # waiting: told too


async def test_evicted_visitors_lose_their_place_and_session(stores: Stores, make_room: Any) -> None:
    await make_room(rate_per_s=1000)
    a, b = (await stores.join("r1", T0 + 1)).visitor_id, (await stores.join("r1", T0 + 2)).visitor_id
    await stores.tick("r1", T0 + 1000)
    assert await stores.queue.evict("r1", a) == ("ok", False, True)
    assert (await stores.queue.status("r1", a, T0 + 1001)).state == "evicted"
    assert (await stores.join("r1", T0 + 1002, a)).outcome == "evicted"
    assert not await stores.queue.is_active("r1", a, T0 + 1003)
    assert await stores.queue.is_active("r1", b, T0 + 1003)
    assert (await stores.queue.evict("nope", a))[0] == "no_room"


async def test_token_bucket_admits_the_configured_rate_whatever_the_number_of_tickers(stores: Stores,
                                                                                      make_room: Any) -> None:
    """Three "replicas" tick at irregular, interleaved moments: together they admit 25/s."""
    import random

    await make_room(rate_per_s=25, max_active=100_000)
    for i in range(400):
        await stores.join("r1", T0 - 1000 + i)
    rng = random.Random(7)
    times = sorted(T0 + rng.randrange(0, 10_000) for _ in range(3 * 100))
    await stores.tick("r1", T0)  # drain the burst gathered before the start
    start = int(await stores.redis.hget(stores.keys.room_state("r1"), "admitted_total") or 0)
    for t in times:
        await stores.tick("r1", t)
    await stores.tick("r1", T0 + 10_000)
    admitted = int(await stores.redis.hget(stores.keys.room_state("r1"), "admitted_total")) - start
    assert abs(admitted - 250) <= 1


async def test_scripts_reload_after_script_flush(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r", persist=False).start()
    client = redis_asyncio.Redis.from_url(server.url)
    try:
        scripts = LuaScripts(client)
        await scripts.load_all()
        s = Stores(client, scripts, RedisKeys("x"))
        await s.rooms.put(room_config("r1"), T0)
        await client.script_flush()
        assert (await s.join("r1", T0 + 10)).outcome == "waiting"
        assert isinstance(s.queue, QueueStore)
    finally:
        await client.aclose()
        server.stop()


async def test_batched_calls_each_get_their_own_reply_and_survive_a_script_flush(tmp_path: Path) -> None:
    import asyncio

    server = EmbeddedRedis(tmp_path / "r", persist=False).start()
    client = redis_asyncio.Redis.from_url(server.url)
    try:
        scripts = LuaScripts(client)
        await scripts.load_all()
        keys = RedisKeys("b")
        queue = QueueStore(RedisCalls.batched(client, scripts), keys)  # the path on a cluster
        await Stores(client, scripts, keys).rooms.put(room_config("r1"), T0)
        joined = await asyncio.gather(*(queue.join("r1", None, T0, burst_s=0.5) for _ in range(300)))
        assert sorted(j.position for j in joined) == list(range(1, 301))
        await client.script_flush()
        statuses = await asyncio.gather(*(queue.status("r1", j.visitor_id, T0 + 1) for j in joined))
        assert [s.position for s in statuses] == [j.position for j in joined]
        assert (await queue.status("r1", "zz_nope00", T0 + 1)).state == "expired"
    finally:
        await client.aclose()
        server.stop()


def test_eta_uses_the_measured_rate_once_there_is_one() -> None:
    from rooms.queue_store import QueueStatus
    from waitingroom.queue import eta_s

    def status(observed: float, paused: bool = False, starts_at_ms: int = 0) -> QueueStatus:
        return QueueStatus("waiting", 100, 500, 0, observed, 10.0, starts_at_ms, paused)

    assert eta_s(status(observed=4.0), now=1000.0) == 25  # 100 / measured 4 per s, not 100 / 10
    assert eta_s(status(observed=0.0), now=1000.0) == 10  # nothing measured yet: the configured rate
    assert eta_s(status(observed=0.0, starts_at_ms=1_060_000), now=1000.0) == 70  # + time to the start
    assert eta_s(status(observed=4.0, paused=True), now=1000.0) is None


def test_scores_and_suffixes_come_from_the_buffered_csprng_without_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    """random_score and new_suffix slice a 4 KiB os.urandom buffer: across several refills every
    score is in (0, 1) on the 2**-53 grid and no byte is handed out twice; a forked worker
    (another pid) draws its own buffer instead of reusing its parent's."""
    from rooms import queue_store

    drawn: list[bytes] = []
    real_urandom = queue_store.os.urandom

    def recording_urandom(n: int) -> bytes:
        drawn.append(real_urandom(n))
        return drawn[-1]

    monkeypatch.setattr(queue_store, "_entropy", queue_store._Entropy())
    monkeypatch.setattr(queue_store.os, "urandom", recording_urandom)
    scores = [queue_store.random_score() for _ in range(2000)]  # 14,000 bytes: four buffers
    assert len(drawn) == 4
    assert all(0 < s < 1 and (s * 2**53).is_integer() for s in scores)
    assert len(set(scores)) == len(scores)
    assert abs(sum(scores) / len(scores) - 0.5) < 0.05
    suffix = queue_store.new_suffix()
    assert re.fullmatch(r"[0-9a-f]{6}", suffix), suffix  # 3 bytes of entropy, in hex
    queue_store._entropy.reset()  # what os.register_at_fork runs in a forked child
    queue_store.new_suffix()
    assert len(drawn) == 5
