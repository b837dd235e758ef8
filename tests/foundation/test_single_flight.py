"""SingleFlight: one call per key at a time, shared by the callers that come while it runs."""

from __future__ import annotations

import asyncio
import gc

import pytest

from stagedoor.single_flight import SingleFlight


async def test_callers_during_a_call_share_it_and_the_next_caller_makes_a_new_one() -> None:
    calls: list[str] = []
    results: dict[str, int] = {}
    release = asyncio.Event()

    async def read(key: str) -> int:
        calls.append(key)
        await release.wait()
        return len(calls)

    flight: SingleFlight[str, int] = SingleFlight(on_result=results.__setitem__)
    waiters = [asyncio.ensure_future(flight.do("a", lambda: read("a"))) for _ in range(5)]
    other = asyncio.ensure_future(flight.do("b", lambda: read("b")))
    for _ in range(10):  # the callers' tasks start the calls' tasks
        await asyncio.sleep(0)
    assert calls == ["a", "b"] and flight.running("a") is not None
    release.set()
    assert await asyncio.gather(*waiters) == [2] * 5 and await other == 2
    assert flight.running("a") is None and results == {"a": 2, "b": 2}
    assert await flight.do("a", lambda: read("a")) == 3  # done: the next caller reads again


async def test_a_caller_that_gives_up_does_not_cancel_the_others_call() -> None:
    release = asyncio.Event()

    async def read() -> str:
        await release.wait()
        return "room"

    flight: SingleFlight[str, str] = SingleFlight()
    impatient = asyncio.ensure_future(flight.do("a", read))
    patient = asyncio.ensure_future(flight.do("a", read))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await patient == "room"
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_failure_reaches_every_caller_is_not_remembered_and_is_retrieved_when_nobody_waits(
        caplog: pytest.LogCaptureFixture) -> None:
    results: dict[str, int] = {}

    async def fail() -> int:
        await asyncio.sleep(0)
        raise OSError("store down")

    flight: SingleFlight[str, int] = SingleFlight(on_result=results.__setitem__)
    outcomes = await asyncio.gather(flight.do("a", fail), flight.do("a", fail), return_exceptions=True)
    assert [type(o) for o in outcomes] == [OSError, OSError] and results == {}

    waiter = asyncio.ensure_future(flight.do("b", fail))
    await asyncio.sleep(0)
    waiter.cancel()  # nobody awaits the call any more
    await asyncio.sleep(0.01)
    gc.collect()
    assert "exception was never retrieved" not in caplog.text
