"""Hypothesis: the join / admit / finish scripts against a small Python model of the queue.

The model is a list (the queue, FIFO after the sale start) and a dict of shopper sessions
(visitor -> expiry). Time only moves forward, by at least 5 ms per step, with a rate of
1000/s: the token bucket never runs dry here, so capacity (max_active) and order are what
is being checked; the rate itself has its own tests.

The second machine adds ``abandon_after_s``: heartbeats in 5 s buckets, visitors who stop
polling, and silences of the whole room (outages), against a model of who is dropped, who
is admitted and where a tick has to stop.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as redis_asyncio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test

from rooms.queue_store import QueueStore
from rooms.store import RoomStore
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from tests.support.rooms import T0, room_config

MAX_ACTIVE = 3
TTL_MS = 10_000
REDIS_URL: dict[str, str] = {}


class QueueMachine(RuleBasedStateMachine):
    visitors = Bundle("visitors")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = redis_asyncio.Redis.from_url(REDIS_URL["url"])
        self.keys = RedisKeys("hyp" + uuid.uuid4().hex[:10])
        self.scripts = LuaScripts(self.redis)
        self.calls = RedisCalls.batched(self.redis, self.scripts)
        self.queue = QueueStore(self.calls, self.keys)
        self.now = T0
        self.waiting: list[str] = []
        self.active: dict[str, int] = {}
        self.run(self.scripts.load_all())
        self.run(RoomStore(self.calls, self.keys).put(
            room_config("p", rate_per_s=1000, max_active=MAX_ACTIVE, session_ttl_s=TTL_MS // 1000), T0))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        async def clean() -> None:
            keys = [k async for k in self.redis.scan_iter(match=f"{self.keys.prefix}:*")]
            if keys:
                await self.redis.delete(*keys)
            await self.redis.aclose()
        self.run(clean())
        self.loop.close()

    # -- the model
    def _advance(self, dt_ms: int) -> None:
        self.now += dt_ms
        self.active = {v: exp for v, exp in self.active.items() if exp > self.now}

    def _model_join(self, visitor: str) -> str:
        if visitor in self.waiting:
            return "waiting"
        if visitor in self.active:
            return "admitted"
        if not self.waiting and len(self.active) < MAX_ACTIVE:
            self.active[visitor] = self.now + TTL_MS
            return "admitted"
        self.waiting.append(visitor)
        return "waiting"

    # -- rules
    @rule(target=visitors, dt=st.integers(5, 400))
    def join_new(self, dt: int) -> str:
        return self._join_new(dt)

    def _join_new(self, dt: int) -> str:
        self._advance(dt)
        result = self.run(self.queue.join("p", None, self.now, burst_s=0.5))
        assert result.created
        assert result.outcome == self._model_join(result.visitor_id)
        if result.outcome == "waiting":
            assert result.position == len(self.waiting)
        return result.visitor_id

    @rule(visitor=visitors, dt=st.integers(5, 400))
    def rejoin(self, visitor: str, dt: int) -> None:
        self._advance(dt)
        before = list(self.waiting)
        result = self.run(self.queue.join("p", visitor, self.now, burst_s=0.5))
        assert result.outcome == self._model_join(visitor)
        if visitor in before:  # re-joining never moves a visitor back
            assert not result.created and result.position == before.index(visitor) + 1

    @rule(dt=st.integers(5, 3000))
    def admit_tick(self, dt: int) -> None:
        self._advance(dt)
        n = min(MAX_ACTIVE - len(self.active), len(self.waiting))
        admitted, self.waiting = self.waiting[:n], self.waiting[n:]
        for v in admitted:
            self.active[v] = self.now + TTL_MS
        result = self.run(self.queue.admit_tick("p", self.now, max_batch=1000, burst_s=0.5))
        assert (result.outcome, result.admitted, result.waiting) == ("ok", n, len(self.waiting))

    @rule(visitor=visitors, dt=st.integers(5, 400))
    def finish(self, visitor: str, dt: int) -> None:
        self._advance(dt)
        expected = self.active.pop(visitor, None) is not None
        assert self.run(self.queue.finish("p", visitor, self.now)) == expected

    @rule(dt=st.integers(5_000, 15_000))
    def time_passes(self, dt: int) -> None:
        self._advance(dt)

    # -- invariants
    @invariant()
    def queue_and_sessions_match_the_model(self) -> None:
        order = [m.decode() for m in self.run(self.redis.zrange(self.keys.room_waiting("p"), 0, -1))]
        assert order == self.waiting
        live = self.run(self.redis.zrangebyscore(self.keys.room_active("p"), f"({self.now}", "+inf"))
        assert sorted(m.decode() for m in live) == sorted(self.active)
        assert len(live) <= MAX_ACTIVE

    @invariant()
    def statuses_match_the_model(self) -> None:
        for i, v in enumerate(self.waiting[:3]):
            status = self.run(self.queue.status("p", v, self.now))
            assert (status.state, status.position) == ("waiting", i + 1)
        for v in list(self.active)[:2]:
            assert self.run(self.queue.status("p", v, self.now)).state == "admitted"


def test_queue_scripts_behave_like_the_model(redis_url: str) -> None:
    REDIS_URL["url"] = redis_url
    run_state_machine_as_test(QueueMachine, settings=settings(
        max_examples=40, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


# ---------------------------------------------------------------- abandonment and outages

ABANDON_S = 15
BUCKET_MS = 5_000  # rooms.queue_store.BUCKET_MS (checked below)
WINDOW = -(-ABANDON_S * 1000 // BUCKET_MS) + 1  # heartbeat buckets a tick looks at, newest first


class AbandonMachine(QueueMachine):
    """The same queue with ``abandon_after_s`` set: waiting visitors are heard when they join,
    re-join or poll (a bit in the current 5 s bucket), and only then: the waiting room being up
    hears nobody. Long silences of the whole room stand for outages (of the fans' way in, of
    the waiting room or of Redis: alike here). The model of lua/admit_batch.lua's judgement: a
    visitor without a bit in the window is dropped when every complete bucket of the window
    holds some visitor's bit, and holds the line (neither admitted nor dropped, the tick stops)
    otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.run(RoomStore(self.calls, self.keys).put(
            room_config("p", rate_per_s=1000, max_active=MAX_ACTIVE, session_ttl_s=TTL_MS // 1000,
                        abandon_after_s=ABANDON_S), T0))
        self.heard: dict[int, set[str]] = {}  # bucket -> waiting visitors heard in it
        self.abandoned = 0

    def _hear(self, visitor: str) -> None:
        self.heard.setdefault(self.now // BUCKET_MS, set()).add(visitor)

    def _model_join(self, visitor: str) -> str:
        outcome = super()._model_join(visitor)
        if outcome == "waiting":
            self._hear(visitor)
        return outcome

    def _model_tick(self) -> tuple[int, int, int]:
        newest = self.now // BUCKET_MS
        window = [self.heard.get(newest - back, set()) for back in range(WINDOW)]
        window_heard = all(window[1:])
        admitted = abandoned = unheard = 0
        want = MAX_ACTIVE - len(self.active)
        while admitted < want and self.waiting:
            visitor = self.waiting[0]
            if any(visitor in bucket for bucket in window):
                self.active[self.waiting.pop(0)] = self.now + TTL_MS
                admitted += 1
            elif window_heard:
                self.waiting.pop(0)
                abandoned += 1
            else:
                unheard = 1
                break
        self.abandoned += abandoned
        return admitted, abandoned, unheard

    @rule(dt=st.integers(5, 3000))
    def admit_tick(self, dt: int) -> None:
        self._advance(dt)
        expected = self._model_tick()
        result = self.run(self.queue.admit_tick("p", self.now, max_batch=1000, burst_s=0.5))
        assert (result.outcome, result.admitted, result.abandoned, result.unheard) == ("ok", *expected)
        assert result.waiting == len(self.waiting)

    @rule(visitor=QueueMachine.visitors, dt=st.integers(5, 6000))
    def poll(self, visitor: str, dt: int) -> None:
        self._advance(dt)
        status = self.run(self.queue.status("p", visitor, self.now))
        if visitor in self.waiting:
            assert (status.state, status.position) == ("waiting", self.waiting.index(visitor) + 1)
            self._hear(visitor)
        elif visitor in self.active:
            assert status.state == "admitted"
        else:
            assert status.state == "expired"

    def _polls(self, visitors: list[str]) -> None:
        for visitor in visitors:
            status = self.run(self.queue.status("p", visitor, self.now))
            assert (status.state, status.position) == ("waiting", self.waiting.index(visitor) + 1)
            self._hear(visitor)

    @rule(dt=st.integers(5_000, 40_000))
    def no_fan_reaches_us(self, dt: int) -> None:  # the waiting room is up and can write; nobody polls
        self._advance(dt)

    @rule(target=QueueMachine.visitors, n=st.integers(2, 6))
    def crowd_joins(self, n: int) -> Any:
        return multiple(*(self._join_new(5) for _ in range(n)))

    @rule(dt=st.integers(1000, 5000), times=st.integers(1, 5))
    def everyone_polls(self, dt: int, times: int) -> None:
        for _ in range(times):
            self._advance(dt)
            self._polls(list(self.waiting))

    @rule(dt=st.integers(1000, 5000), times=st.integers(1, 5))
    def all_but_the_first_poll(self, dt: int, times: int) -> None:  # the first in line closed the tab
        for _ in range(times):
            self._advance(dt)
            self._polls(self.waiting[1:])

    @invariant()
    def statuses_match_the_model(self) -> None:
        pass  # a status read is a heartbeat here: polls are the rules', checked there

    @invariant()
    def abandoned_total_matches(self) -> None:
        total = self.run(self.redis.hget(self.keys.room_state("p"), "abandoned_total"))
        assert int(total or 0) == self.abandoned


def test_abandonment_is_judged_like_the_model_through_outages(redis_url: str) -> None:
    from rooms import queue_store
    assert queue_store.BUCKET_MS == BUCKET_MS
    REDIS_URL["url"] = redis_url
    run_state_machine_as_test(AbandonMachine, settings=settings(
        max_examples=100, stateful_step_count=50, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
