"""Stock-aware admission against real Redis: the admission tick lets in at most as many shoppers
still choosing (admitted, not held yet, for ``stock_reserve_s`` at most) as ``stock_factor`` x the
event's free tickets serve at the room's mean tickets per hold; waiting fans read reason
``all_held`` while the stock admits
nobody; admission resumes in queue order as holds end and choosing shoppers hold, buy, leave or
run out of their reserve. The hold, purchase and sweep steps are ticketing's own store calls
(the same scripts the HTTP path runs), the admission steps the controller's.

The hypothesis machine checks every tick against a model of who may be let in; the other tests
drive the real controller (one and three replicas) and a Redis Cluster, where the room and the
event are on different slots.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from admission.controller import AdmissionController
from admission.metrics import AdmissionMetrics
from rooms import sessions
from rooms.queue_store import QueueStore
from rooms.stock import event_stock
from rooms.store import RoomStore
from stagedoor.connections import make_redis
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from tests.support.rooms import T0, room_config
from ticketing.holds.errors import HoldExpired, TicketsUnavailable
from ticketing.holds.store import HoldStore
from ticketing.holds.types import Hold, InventoryMeta, StagedTier

BURST_S = 0.5
EVENT = "4242"
ROOM = "stock"
HOLD_TTL_MS = 4_000
SESSION_TTL_S = 60
RESERVE_S = 10
REDIS_URL: dict[str, str] = {}


class World:
    """Room, queue and inventory stores on one key prefix (deleted afterwards)."""

    def __init__(self, redis: Any, keys: RedisKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = LuaScripts(redis)
        self.calls = RedisCalls.batched(redis, self.scripts)
        self.rooms = RoomStore(self.calls, keys)
        self.queue = QueueStore(self.calls, keys)
        self.holds = HoldStore(self.calls, keys)

    async def setup(self, capacity: int, now_ms: int, *, factor: float = 1.0, rate: float = 1000.0,
                    max_per_order: int = 4) -> None:
        await self.scripts.load_all()
        await self.rooms.put(room_config(ROOM, event_id=EVENT, rate_per_s=rate, max_active=10_000,
                                         session_ttl_s=SESSION_TTL_S, stock_factor=factor,
                                         stock_reserve_s=RESERVE_S, opens_at_ms=now_ms - 3_600_000,
                                         starts_at_ms=now_ms - 1), now_ms)
        meta = InventoryMeta(status="on_sale", currency="EUR", max_per_order=max_per_order, hold_ttl_ms=HOLD_TTL_MS)
        tiers = [StagedTier(code="ga", price=1000, capacity=capacity, sold=0, general_admission=True)]
        await self.holds.load(EVENT, meta, tiers, [], generation="g1", room=ROOM)

    async def tick(self, now_ms: int) -> Any:
        stock = await event_stock(self.calls, self.keys, EVENT)
        result = await self.queue.admit_tick(ROOM, now_ms, max_batch=1000, burst_s=BURST_S, stock=stock)
        return stock, result

    async def hold(self, visitor: str, qty: int, now_ms: int) -> Hold | None:
        """A shopper's hold as ticketing places it: the hold script, then the room hears they chose."""
        try:
            hold = await self.holds.hold_general_admission(EVENT, "h" + uuid.uuid4().hex[:12], "u-" + visitor, "ga",
                                                           qty, now_ms, admitted=True)
        except TicketsUnavailable:
            return None
        await sessions.chose(self.calls, self.keys, ROOM, visitor, qty, now_ms)
        return hold

    async def buy(self, hold: Hold, visitor: str, now_ms: int) -> bool:
        """The purchase's Redis steps: lock (refused once expired), confirm, finish the session."""
        try:
            locked = await self.holds.lock_for_payment(hold, now_ms, 60_000)
        except HoldExpired:
            return False
        await self.holds.confirm_sold(locked, now_ms)
        await sessions.finish_shopper(self.calls, self.keys, ROOM, visitor, now_ms)
        return True

    async def choosing(self) -> list[str]:
        return [m.decode() for m in await self.redis.zrange(self.keys.room_choosing(ROOM), 0, -1)]

    async def waiting(self) -> list[str]:
        return [m.decode() for m in await self.redis.zrange(self.keys.room_waiting(ROOM), 0, -1)]

    async def active(self) -> set[str]:
        return {m.decode() for m in await self.redis.zrange(self.keys.room_active(ROOM), 0, -1)}

    async def cleanup(self) -> None:
        found = [k async for k in self.redis.scan_iter(match=f"{self.keys.prefix}:*")]
        if found:
            await self.redis.delete(*found)


@pytest.fixture
async def world(redis_url: str) -> AsyncIterator[World]:
    redis = redis_asyncio.Redis.from_url(redis_url)
    w = World(redis, RedisKeys("st" + uuid.uuid4().hex[:10]))
    try:
        yield w
    finally:
        await w.cleanup()
        await redis.aclose()


# ------------------------------------------------------------------------------ the model


class StockMachine(RuleBasedStateMachine):
    """The model: the queue (FIFO), the choosing shoppers (visitor -> admitted at), live holds
    and what was sold. Every tick is checked against the bound it must keep, for the free count
    it read; every join's immediate admission against the last tick's count."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = redis_asyncio.Redis.from_url(REDIS_URL["url"])
        self.w = World(self.redis, RedisKeys("sm" + uuid.uuid4().hex[:10]))
        self.now = T0
        self.capacity = 0
        self.factor = 1.0
        self.waiting: list[str] = []
        self.choosing: dict[str, int] = {}
        # admitted shoppers in admission order (visitor ids are random: an order of their own would
        # make a replayed example pick another shopper)
        self.shoppers: dict[str, None] = {}
        self.holds: dict[str, tuple[Hold, str]] = {}  # hold id -> (hold, visitor)
        self.sold = 0
        self.hold_count = 0
        self.hold_tickets = 0
        self.last_free: int | None = None  # the last tick's free count (the joins' bound)
        self.last_reserve = RESERVE_S * 1000  # the reserve the last tick used (the joins' window)
        self.tth = [0] * 12  # holds by time from admission, within 2^b s (lua/shopper_held.lua)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.w.cleanup())
        self.run(self.redis.aclose())
        self.loop.close()

    @initialize(capacity=st.integers(1, 30), factor=st.sampled_from([1.0, 1.0, 0.5, 2.0]))
    def setup(self, capacity: int, factor: float) -> None:
        self.capacity, self.factor = capacity, factor
        self.run(self.w.setup(capacity, self.now, factor=factor, rate=100_000.0))

    # -- helpers of the model
    def _reserve(self) -> int:
        """How long a choosing shopper counts: twice the time in which nine in ten held (once ten
        holds were seen, at least 4 s), at most the room's stock_reserve_s and the session."""
        reserve = min(RESERVE_S * 1000, SESSION_TTL_S * 1000)
        total = sum(self.tth)
        if total >= 10:
            cum = 0
            for b, count in enumerate(self.tth):
                cum += count
                if cum * 10 >= total * 9:
                    return min(reserve, max(4000, 2000 * 2 ** b))
        return reserve

    def _serves(self, free: int) -> int:
        """Choosing shoppers the free tickets serve, at the mean tickets per hold."""
        serves = math.floor(self.factor * free * (self.hold_count + 4) / (self.hold_tickets + 4) + 1e-9)
        return max(1, serves) if free > 0 else serves  # the last tickets still go to one fan at a time

    # -- rules (each moves the clock by 5 ms first: at 100,000 admissions/s the token bucket never
    # runs dry, so the stock is what bounds admission here; the rate has tests of its own)
    def _step(self) -> None:
        self.now += 5

    @rule(n=st.integers(1, 3))
    def join(self, n: int) -> None:
        self._step()
        for _ in range(n):
            res = self.run(self.w.queue.join(ROOM, None, self.now, burst_s=BURST_S))
            within = sum(1 for t in self.choosing.values() if t > self.now - self.last_reserve)
            may = not self.waiting and self.last_free is not None and self._serves(self.last_free) - within >= 1
            if res.outcome == "admitted":
                assert may, "a join was admitted past the stock bound"
                self.choosing[res.visitor_id] = self.now
                self.shoppers[res.visitor_id] = None
            else:
                assert res.outcome == "waiting"
                assert not may, "a join queued although the stock and an empty queue allowed it in"
                self.waiting.append(res.visitor_id)

    @rule()
    def tick(self) -> None:
        self._step()
        stock, result = self.run(self.w.tick(self.now))
        assert stock is not None and stock.status == "on_sale"
        assert stock.free + stock.held + self.sold == self.capacity
        reserve = self._reserve()
        self.choosing = {v: t for v, t in self.choosing.items() if t > self.now - reserve}
        bound = self._serves(stock.free) - len(self.choosing)
        expected = self.waiting[:max(0, bound)]
        assert result.admitted == len(expected), (result, bound, stock)
        assert bool(result.all_held) == (bound - len(expected) <= 0 and len(self.waiting) > len(expected))
        assert self.run(self.w.waiting()) == self.waiting[len(expected):]  # FIFO: the front went in
        for v in expected:
            self.choosing[v] = self.now
            self.shoppers[v] = None
        self.waiting = self.waiting[len(expected):]
        self.last_free, self.last_reserve = stock.free, reserve
        if self.waiting:
            status = self.run(self.w.queue.status(ROOM, self.waiting[0], self.now))
            assert status.state == "waiting" and status.all_held == bool(result.all_held)

    @precondition(lambda self: bool(self.shoppers))
    @rule(pick=st.integers(0, 1000), qty=st.integers(1, 4))
    def hold(self, pick: int, qty: int) -> None:
        self._step()
        visitor = list(self.shoppers)[pick % len(self.shoppers)]
        if any(v == visitor for _, v in self.holds.values()):
            return  # one hold per shopper (the script says so too)
        hold = self.run(self.w.hold(visitor, qty, self.now))
        effective_free = self.capacity - self.sold - sum(
            h.quantity or 0 for h, _ in self.holds.values() if h.expires_ms > self.now)
        assert (hold is not None) == (qty <= effective_free), "expired holds count as free, live ones do not"
        if hold is not None:
            self.holds[hold.id] = (hold, visitor)
            admitted_at = self.choosing.pop(visitor, None)
            if admitted_at is not None:  # still in Redis's choosing set: its time to hold is counted
                seconds, b = (self.now - admitted_at) / 1000, 0
                while b < 11 and 2 ** b < seconds:
                    b += 1
                self.tth[b] += 1
            self.hold_count += 1
            self.hold_tickets += qty

    @precondition(lambda self: bool(self.holds))
    @rule(pick=st.integers(0, 1000))
    def release(self, pick: int) -> None:
        self._step()
        hold_id = list(self.holds)[pick % len(self.holds)]
        hold, _ = self.holds.pop(hold_id)
        self.run(self.w.holds.release(hold, self.now))  # an expired one: nothing to give back

    @precondition(lambda self: bool(self.holds))
    @rule(pick=st.integers(0, 1000))
    def buy(self, pick: int) -> None:
        self._step()
        hold_id = list(self.holds)[pick % len(self.holds)]  # in the order they were placed
        hold, visitor = self.holds.pop(hold_id)
        bought = self.run(self.w.buy(hold, visitor, self.now))
        assert bought == (hold.expires_ms > self.now)
        if bought:
            self.sold += hold.quantity or 0
            self.shoppers.pop(visitor, None)
            self.choosing.pop(visitor, None)
        assert self.sold <= self.capacity

    @rule(n=st.integers(1, 5), delay=st.sampled_from([100, 1_500, 3_000, 9_000]))
    def wave(self, n: int, delay: int) -> None:
        """Fans join, a tick lets some in, and after ``delay`` the newest shoppers hold one ticket
        each: enough holds for the room to learn how long its fans take (the learned reserve)."""
        self.join(n)
        self.tick()
        self.now += delay
        for i in range(min(n, len(self.shoppers))):
            self.hold(len(self.shoppers) - 1 - i, 1)

    @rule(dt=st.sampled_from([50, 1_000, 3_000, 6_000]))
    def advance(self, dt: int) -> None:
        self.now += dt

    @rule()
    def sweep(self) -> None:
        self.run(self.w.holds.sweep_expired(EVENT, self.now))

    @invariant()
    def choosing_set_matches(self) -> None:
        if self.capacity:
            assert set(self.run(self.w.choosing())) == set(self.choosing)


def test_stock_admission_behaves_like_the_model(redis_url: str) -> None:
    REDIS_URL["url"] = redis_url
    run_state_machine_as_test(StockMachine, settings=settings(
        max_examples=60, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


# ------------------------------------------------------------------------------ scenarios


async def test_a_sale_admits_as_many_shoppers_as_the_free_tickets_serve_and_resumes_in_order(world: World) -> None:
    now = T0
    await world.setup(8, now)
    for _ in range(30):
        await world.queue.join(ROOM, None, now, burst_s=BURST_S)  # no tick has counted the stock: all queue
    first = await world.waiting()
    assert len(first) == 30
    stock, result = await world.tick(now + 100)
    assert (stock.free, stock.held, result.admitted, result.all_held) == (8, 0, 8, 1)
    admitted = first[:8]
    assert await world.active() == set(admitted)
    status = await world.queue.status(ROOM, first[8], now + 100)
    assert status.state == "waiting" and status.all_held

    # four shoppers hold two each: all eight are held; the mean hold is now (4 + 8) / (4 + 4) = 1.5
    holds = [await world.hold(v, 2, now) for v in admitted[:4]]
    assert all(holds)
    assert sorted(await world.choosing()) == sorted(admitted[4:])
    stock, result = await world.tick(now + 200)
    assert (stock.free, stock.held, result.admitted, result.all_held) == (0, 8, 0, 1)

    # two buy; the other two holds expire and are swept: 4 free serve floor(4 / 1.5) = 2 shoppers,
    # but the four who never held still count as choosing -> nobody yet
    for hold, visitor in zip(holds[:2], admitted[:2], strict=True):
        assert hold is not None and await world.buy(hold, visitor, now + 1_000)
    expired_at = now + HOLD_TTL_MS + 1
    await world.holds.sweep_expired(EVENT, expired_at)
    stock, result = await world.tick(expired_at)
    assert (stock.free, stock.held, result.admitted, result.all_held) == (4, 0, 0, 1)

    # the four who never held run out of their reserve: the next two in the queue go in, and the
    # rest read all_held again (two choosing for what 4 free tickets serve)
    reserve_over = now + 100 + RESERVE_S * 1000 + 1
    stock, result = await world.tick(reserve_over)
    assert (stock.free, result.admitted, result.all_held) == (4, 2, 1)
    assert await world.waiting() == first[10:]
    assert set(await world.choosing()) == set(first[8:10])
    stock, result = await world.tick(reserve_over + 100)
    assert (result.admitted, result.all_held) == (0, 1)
    status = await world.queue.status(ROOM, first[10], reserve_over + 100)
    assert status.all_held

    # once they hold, the stock is what it is: a purchase ends the session and the choosing entry
    hold = await world.hold(first[8], 1, reserve_over + 200)
    assert hold is not None and await world.buy(hold, first[8], reserve_over + 300)
    assert first[8] not in await world.choosing() and first[8] not in await world.active()


async def test_a_join_is_admitted_at_once_only_within_the_last_count(world: World) -> None:
    now = T0
    await world.setup(2, now)
    first = await world.queue.join(ROOM, None, now, burst_s=BURST_S)
    assert first.outcome == "waiting"  # a gated room with no count yet queues everyone
    _, result = await world.tick(now + 10)
    assert result.admitted == 1  # 2 free serve 2 shoppers: the one waiting goes in
    second = await world.queue.join(ROOM, None, now + 20, burst_s=BURST_S)
    assert second.outcome == "admitted"
    third = await world.queue.join(ROOM, None, now + 30, burst_s=BURST_S)
    assert third.outcome == "waiting"  # two choosing for two tickets
    assert set(await world.choosing()) == {first.visitor_id, second.visitor_id}


async def test_an_evicted_shopper_stops_counting(world: World) -> None:
    now = T0
    await world.setup(1, now)
    for _ in range(2):
        await world.queue.join(ROOM, None, now, burst_s=BURST_S)
    _, result = await world.tick(now + 100)
    assert result.admitted == 1
    shopper = (await world.choosing())[0]
    await world.queue.evict(ROOM, shopper)
    assert await world.choosing() == []
    _, result = await world.tick(now + 200)
    assert result.admitted == 1


async def test_a_room_without_stock_admits_by_rate_and_clears_the_last_count(world: World) -> None:
    now = T0
    await world.setup(1, now)
    for _ in range(5):
        await world.queue.join(ROOM, None, now, burst_s=BURST_S)
    _, result = await world.tick(now + 10)
    assert (result.admitted, result.all_held) == (1, 1)
    assert await world.redis.hget(world.keys.room_state(ROOM), "stock_free") == b"1"
    result = await world.queue.admit_tick(ROOM, now + 100, max_batch=1000, burst_s=BURST_S, stock=None)
    assert result.admitted == 4 and result.all_held == 0
    assert await world.redis.hget(world.keys.room_state(ROOM), "stock_free") is None


@pytest.mark.parametrize("replicas", [1, 3])
async def test_controllers_never_let_in_more_than_the_stock_serves(world: World, make_settings: Any,
                                                                   replicas: int) -> None:
    """Real controllers on the wall clock: 50 fans wait for 6 tickets; whatever the number of
    replicas, 6 are let in, the rest read all_held; a returned hold lets the next ones in."""
    import time

    settings = make_settings(admission_tick_ms=20, redis_key_prefix=world.keys.prefix)
    now = int(time.time() * 1000)
    await world.setup(6, now)
    for _ in range(50):
        await world.queue.join(ROOM, None, now, burst_s=BURST_S)
    controllers = [AdmissionController(settings, RoomStore(world.calls, world.keys),
                                       QueueStore(world.calls, world.keys), AdmissionMetrics())
                   for _ in range(replicas)]
    tasks = [asyncio.create_task(c.run()) for c in controllers]
    try:
        await _until(lambda: _zcard(world, world.keys.room_active(ROOM)), 6)
        await asyncio.sleep(0.3)  # many more ticks of every replica
        assert len(await world.active()) == 6
        st_hash = await world.redis.hgetall(world.keys.room_state(ROOM))
        assert st_hash[b"all_held"] == b"1" and st_hash[b"stock_free"] == b"6"
        waiting = await world.waiting()
        assert len(waiting) == 44
        # one shopper holds 3 and releases them: the mean hold is (4 + 3) / (4 + 1) = 1.4 tickets,
        # 6 free serve 4 choosing shoppers and 5 are choosing: still nobody; then two of the
        # choosing shoppers buy one ticket each: the mean is 9 / 7, 4 free serve 3, 3 choosing ->
        # nobody; one of the choosing leaves (evicted): 2 choosing for 3 -> the next one goes in
        shoppers = sorted(await world.active())
        hold = await world.hold(shoppers[0], 3, int(time.time() * 1000))
        assert hold is not None
        await world.holds.release(hold, int(time.time() * 1000))
        for v in shoppers[1:3]:
            h = await world.hold(v, 1, int(time.time() * 1000))
            assert h is not None and await world.buy(h, v, int(time.time() * 1000))
        await asyncio.sleep(0.3)
        assert await world.waiting() == waiting
        await world.queue.evict(ROOM, shoppers[3])
        await _until(lambda: _zcard(world, world.keys.room_waiting(ROOM)), 43)
        assert await world.waiting() == waiting[1:]  # the front of the queue, no one else
        await asyncio.sleep(0.3)
        assert await world.waiting() == waiting[1:]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _zcard(world: World, key: str) -> int:
    return int(await world.redis.zcard(key))


async def _until(read: Any, value: int, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (got := await read()) != value:
        assert loop.time() < deadline, f"still {got}, not {value}"
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_on_a_cluster_the_room_and_the_event_live_apart(make_settings: Any, redis_cluster_url: str) -> None:
    settings = make_settings(redis_url=redis_cluster_url, redis_cluster=True)
    client = make_redis(settings)
    keys = RedisKeys("sc" + uuid.uuid4().hex[:8])
    assert _slot(keys.room_state(ROOM)) != _slot(keys.inventory_tiers(EVENT))
    w = World(client, keys)
    w.calls = RedisCalls.from_settings(settings, client, w.scripts)
    w.rooms, w.queue, w.holds = RoomStore(w.calls, keys), QueueStore(w.calls, keys), HoldStore(w.calls, keys)
    try:
        await w.setup(3, T0)
        for _ in range(5):
            await w.queue.join(ROOM, None, T0, burst_s=BURST_S)
        stock, result = await w.tick(T0 + 100)
        assert (stock.free, result.admitted, result.all_held) == (3, 3, 1)
        hold = await w.hold((await w.choosing())[0], 3, T0 + 110)
        assert hold is not None
        _, result = await w.tick(T0 + 120)
        assert (result.admitted, result.all_held) == (0, 1)
        await w.holds.release(hold, T0 + 130)
        _, result = await w.tick(T0 + 140)
        # 3 free at a mean hold of (4 + 3) / (4 + 1) = 1.4 serve 2; 2 still choosing -> nobody
        assert (result.admitted, result.all_held) == (0, 1)
    finally:
        for key in [k for node_keys in [await _scan(client, keys.prefix)] for k in node_keys]:
            await client.delete(key)
        await client.aclose()


def _slot(key: str) -> int:
    from redis.crc import key_slot

    return key_slot(key.encode())


async def _scan(client: Any, prefix: str) -> list[bytes]:
    return [k async for k in client.scan_iter(match=f"{prefix}:*")]
