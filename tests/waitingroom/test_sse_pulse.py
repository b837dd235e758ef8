"""The room pulse that wakes open event streams (waitingroom/sse_pulse.py), on a real Redis.

A stream is woken when its visitor was admitted (a live session in the active set) or when the
room changed (paused, mode, start, close, sold out, deleted); otherwise it sleeps on its own
timer. Pulses are driven by hand here (``pulse()``), time is the fixed T0.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.support.rooms import T0, Stores
from waitingroom.metrics import WaitingRoomMetrics
from waitingroom.queue import StatusOut
from waitingroom.routes import SSE_CHECK_MAX_S, SSE_POSITION_EVERY_S, next_check_s
from waitingroom.sse_pulse import RoomPulses


def _woken(*watches: Any) -> list[bool]:
    return [w.wake.is_set() for w in watches]


def _reset(*watches: Any) -> None:
    for w in watches:
        w.wake.clear()


async def test_a_pulse_wakes_only_the_admitted_visitors_and_everyone_when_the_room_changes(
        stores: Stores, make_room: Any) -> None:
    await make_room("r1", paused=True)
    a = (await stores.join("r1", T0)).visitor_id
    b = (await stores.join("r1", T0)).visitor_id
    metrics = WaitingRoomMetrics()
    pulses = RoomPulses(stores.redis, stores.keys, clock_ms=lambda: T0 + 1000, period_s=3600, metrics=metrics)
    keys = stores.keys
    with pulses.watch("r1", a) as wa, pulses.watch("r1", b) as wb, pulses.watch("r1", b) as wb2:
        assert pulses.streams("r1") == 3
        # the first pulse: every new stream reads once more (its first read came before it registered)
        assert await pulses.pulse("r1") == 3 and _woken(wa, wb, wb2) == [True, True, True]
        _reset(wa, wb, wb2)
        assert await pulses.pulse("r1") == 0  # nothing changed: nobody is woken

        # a admitted (a live session): a's stream alone; b's two tabs sleep on
        await stores.redis.zadd(keys.room_active("r1"), {a: T0 + 600_000})
        assert await pulses.pulse("r1") == 1 and _woken(wa, wb, wb2) == [True, False, False]
        _reset(wa)
        # a session that already ended wakes nobody
        await stores.redis.zadd(keys.room_active("r1"), {a: T0 - 1})
        assert await pulses.pulse("r1") == 0 and _woken(wa) == [False]

        # the room changes: resumed, abandon time shortened (the streams' heartbeats must follow),
        # sold out, deleted; each wakes every stream once
        for change in (lambda: stores.redis.hset(keys.room_config("r1"), "paused", "0"),
                       lambda: stores.redis.hset(keys.room_config("r1"), "abandon_ms", "3000"),
                       lambda: stores.redis.hset(keys.room_state("r1"), "sold_out", "1"),
                       lambda: stores.redis.delete(keys.room_config("r1"))):
            await change()
            assert await pulses.pulse("r1") == 3 and _woken(wa, wb, wb2) == [True, True, True]
            _reset(wa, wb, wb2)
            assert await pulses.pulse("r1") == 0
    assert pulses.streams("r1") == 0 and await pulses.pulse("r1") == 0
    woken = {reason: metrics.sse_wakeups_total.labels(reason).value
             for reason in ("registered", "admitted", "room_changed")}
    assert woken == {"registered": 3, "admitted": 1, "room_changed": 12}


async def test_the_rooms_state_is_read_every_pulse_and_the_active_set_every_other_one(
        stores: Stores, make_room: Any) -> None:
    await make_room("r1")
    a = (await stores.join("r1", T0)).visitor_id
    pulses = RoomPulses(stores.redis, stores.keys, clock_ms=lambda: T0 + 1000, period_s=3600)
    assert pulses.period_s == 3600 and pulses.admitted_every == 2  # defaults: 0.25 s and 0.5 s
    keys = stores.keys
    with pulses.watch("r1", a) as wa:
        assert await pulses.pulse("r1") == 1
        _reset(wa)
        await stores.redis.zadd(keys.room_active("r1"), {a: T0 + 600_000})
        assert await pulses.pulse("r1", admitted=False) == 0 and _woken(wa) == [False]  # the room's state only
        await stores.redis.hset(keys.room_state("r1"), "sold_out", "1")
        assert await pulses.pulse("r1", admitted=False) == 1 and _woken(wa) == [True]  # a room change: at once
        _reset(wa)
        await stores.redis.hset(keys.room_state("r1"), "sold_out", "0")
        await pulses.pulse("r1", admitted=False)
        _reset(wa)
        assert await pulses.pulse("r1") == 1 and _woken(wa) == [True]  # the admission, at the next full pulse


async def test_the_pulse_runs_while_a_room_has_streams_survives_redis_errors_and_stops_with_the_service(
        stores: Stores, make_room: Any, redis_url: str) -> None:
    await make_room("r1")
    vid = (await stores.join("r1", T0)).visitor_id
    pulses = RoomPulses(stores.redis, stores.keys, clock_ms=lambda: T0, period_s=0.05)
    with pulses.watch("r1", vid) as watch:
        await asyncio.wait_for(watch.wake.wait(), 2)  # the first pulse ran by itself
        task = pulses._rooms["r1"].task
        assert task is not None and not task.done()
    await asyncio.sleep(0)
    assert task.done() and "r1" not in pulses._rooms  # the last stream left: the pulse stopped

    # Redis unreachable: the pulse logs and keeps going; the streams are not woken by it
    dead = redis_asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    metrics = WaitingRoomMetrics()
    failing = RoomPulses(dead, stores.keys, clock_ms=lambda: T0, period_s=0.05, metrics=metrics)
    with failing.watch("r1", vid) as watch:
        await asyncio.sleep(0.4)
        task = failing._rooms["r1"].task
        assert task is not None and not task.done() and not watch.wake.is_set()
        assert metrics.sse_pulse_failures_total._value.get() >= 2  # counted, every failed pulse
        await failing.stop()  # shutdown: every stream is woken, the pulses end
        assert watch.wake.is_set() and task.done()
    with failing.watch("r1", vid) as late:  # a stream opened during shutdown is woken at once
        assert late.wake.is_set() and failing.streams("r1") == 0
    await dead.aclose()


def _status(state: str = "waiting", eta_s: int | None = 100, paused: bool = False) -> StatusOut:
    return StatusOut(state=state, position=10 if state == "waiting" else None, ahead=9 if state == "waiting" else None,  # type: ignore[arg-type]
                     waiting_total=50, eta_s=eta_s, starts_at=None, paused=paused)


def test_a_stream_reads_its_status_by_how_soon_it_can_change_and_often_enough_to_stay_alive() -> None:
    assert next_check_s(_status(eta_s=3)) == SSE_POSITION_EVERY_S  # near the front: every second
    assert next_check_s(_status(eta_s=60)) == 3.0  # a twentieth of the wait
    assert next_check_s(_status(eta_s=3600)) == SSE_CHECK_MAX_S  # far back: every few seconds
    assert next_check_s(_status(eta_s=None, paused=True)) == SSE_CHECK_MAX_S  # the pulse wakes it on resume
    assert next_check_s(_status(eta_s=3600), abandon_after_s=6) == 2.0  # three heartbeats per abandon window
    assert next_check_s(_status(eta_s=3600), abandon_after_s=1) == 0.5
    assert next_check_s(_status("pre_queue", eta_s=2)) == 2.0  # read again at the start
    assert next_check_s(_status("pre_queue", eta_s=0)) == 0.5
    assert next_check_s(_status("pre_queue", eta_s=90)) == SSE_CHECK_MAX_S
