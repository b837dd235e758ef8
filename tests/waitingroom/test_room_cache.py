"""The per-process room config cache of WaitingRoom: fresh for 0.5 s, then read again, once per
room however many requests find it stale at the same moment."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rooms.errors import RoomNotFound
from rooms.store import RoomPatch
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings
from tests.support.rooms import T0, Stores
from waitingroom.metrics import WaitingRoomMetrics
from waitingroom.queue import ROOM_CACHE_S, WaitingRoom


class CountingReads:
    """The real RoomStore, with its config reads counted."""

    def __init__(self, stores: Stores) -> None:
        self.store = stores.rooms
        self.reads = 0

    async def get(self, room_id: str) -> Any:
        self.reads += 1
        await asyncio.sleep(0.01)  # keep the read in flight while the other requests arrive
        return await self.store.get(room_id)


def _waiting_room(stores: Stores, reads: CountingReads) -> WaitingRoom:
    settings = Settings(queue_token_secret="q" * 40)
    return WaitingRoom(settings, reads, stores.queue, KeyRing.generate(), WaitingRoomMetrics())  # type: ignore[arg-type]


async def test_requests_that_find_the_config_stale_share_one_read(stores: Stores, make_room: Any) -> None:
    await make_room("r1", rate_per_s=10.0)
    reads = CountingReads(stores)
    wr = _waiting_room(stores, reads)
    now = T0 / 1000

    configs = await asyncio.gather(*(wr.room("r1", now) for _ in range(200)))
    assert reads.reads == 1
    assert {c.rate_per_s for c in configs} == {10.0}

    assert (await wr.room("r1", now + ROOM_CACHE_S)).rate_per_s == 10.0  # still fresh: no read
    assert wr.fresh_room("r1", now + ROOM_CACHE_S) is not None
    assert reads.reads == 1

    # An admin change is seen once the cache is stale, again with one read for every request.
    await stores.rooms.patch("r1", RoomPatch(rate_per_s=25.0), T0)
    later = now + ROOM_CACHE_S + 0.01
    assert wr.fresh_room("r1", later) is None
    configs = await asyncio.gather(*(wr.room("r1", later) for _ in range(200)))
    assert reads.reads == 2
    assert {c.rate_per_s for c in configs} == {25.0}


async def test_an_unknown_room_is_one_read_and_a_404_for_every_waiter(stores: Stores) -> None:
    reads = CountingReads(stores)
    wr = _waiting_room(stores, reads)
    results = await asyncio.gather(*(wr.room("nope", T0 / 1000) for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, RoomNotFound) for r in results)
    assert reads.reads == 1
    with pytest.raises(RoomNotFound):
        wr.fresh_room("nope", T0 / 1000)  # remembered as missing while fresh


async def test_a_waiter_that_gives_up_does_not_cancel_the_shared_read(stores: Stores, make_room: Any) -> None:
    await make_room("r1")
    reads = CountingReads(stores)
    wr = _waiting_room(stores, reads)
    now = T0 / 1000
    first = asyncio.ensure_future(wr.room("r1", now))
    second = asyncio.ensure_future(wr.room("r1", now))
    await asyncio.sleep(0)
    first.cancel()  # the visitor closed the tab
    assert (await second).room == "r1"
    assert first.cancelled()
    assert reads.reads == 1
    assert wr.fresh_room("r1", now) is not None


async def test_a_failed_read_reaches_its_waiters_and_the_next_request_reads_again(stores: Stores,
                                                                                    make_room: Any) -> None:
    await make_room("r1")
    reads = CountingReads(stores)
    wr = _waiting_room(stores, reads)
    failing = True
    real_get = reads.get

    async def flaky(room_id: str) -> Any:
        if failing:
            reads.reads += 1
            await asyncio.sleep(0.01)
            raise ConnectionError("redis went away")
        return await real_get(room_id)

    reads.get = flaky  # type: ignore[method-assign]
    results = await asyncio.gather(*(wr.room("r1", T0 / 1000) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert reads.reads == 1
    failing = False
    assert (await wr.room("r1", T0 / 1000)).room == "r1"
    assert reads.reads == 2
