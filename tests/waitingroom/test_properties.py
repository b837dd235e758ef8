"""Hypothesis: the join / admit / finish scripts against a small Python model of the queue.

The model is a list (the queue, FIFO after the sale start) and a dict of shopper sessions
(visitor -> expiry). Time only moves forward, by at least 5 ms per step, with a rate of
1000/s: the token bucket never runs dry here, so capacity (max_active) and order are what
is being checked; the rate itself has its own tests.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as redis_asyncio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from stagedoor.lua import LuaScripts
from stagedoor.redis_keys import RedisKeys
from tests.waitingroom.conftest import T0, room_config
from waitingroom.queue_store import QueueStore
from waitingroom.rooms import RoomStore

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
        self.queue = QueueStore(self.redis, self.scripts, self.keys)
        self.now = T0
        self.waiting: list[str] = []
        self.active: dict[str, int] = {}
        self.run(self.scripts.load_all())
        self.run(RoomStore(self.redis, self.scripts, self.keys).put(
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
