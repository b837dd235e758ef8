"""Purchase and the waiting room (rooms.sessions): a purchase through the queue ends the
shopper's session at once, and selling the last seat marks the room sold out."""

from __future__ import annotations

import asyncio

from rooms.queue_store import QueueStore
from rooms.store import RoomConfig, RoomStore, room_from_config
from stagedoor.admission_tokens import mint_admission_token
from stagedoor.clock import ManualClock
from stagedoor.web import CALLS, KEYS
from tests.support.events import buy, seat_map


async def _admitted_visitor(client, event_id: str, now_ms: int) -> str:
    app = client.app
    rooms = RoomStore(app[CALLS], app[KEYS])
    await rooms.put(room_from_config("hall", RoomConfig(event_id=event_id, rate_per_s=100.0, max_active=10), now_ms),
                    now_ms)
    queue = QueueStore(app[CALLS], app[KEYS])
    joined = await queue.join("hall", None, now_ms, burst_s=1.0)
    if joined.outcome != "admitted":
        await queue.admit_tick("hall", now_ms + 1_000, max_batch=10, burst_s=1.0)
    assert await queue.is_active("hall", joined.visitor_id, now_ms + 1_000)
    return joined.visitor_id


async def test_a_purchase_through_the_queue_finishes_the_shopper_and_the_last_seat_sells_the_room_out(
        shop, make_event, create_user, keyring, manual_clock: ManualClock) -> None:
    client = await shop()
    event = await make_event(client, seat_map=seat_map(rows=1, per_row=1, tiers=("A",)),
                             tiers=[{"code": "A", "name": "Stalls", "price": 100}])
    visitor = await _admitted_visitor(client, event["id"], manual_clock.now_ms())
    manual_clock.advance(1_000)
    token, _ = mint_admission_token(keyring, visitor_id=visitor, room="hall", event_id=event["id"], ttl_s=600)
    fan = await create_user()
    resp = await client.post(f"/api/events/{event['id']}/holds", json={"seats": ["s1"]},
                             headers={**fan.headers, "X-Admission-Token": token})
    assert resp.status == 201, await resp.text()
    hold = await resp.json()
    assert (await buy(client, fan, hold["hold_id"])).status == 403  # gated: the token is required to buy too
    resp = await buy(client, fan, hold["hold_id"], headers={"X-Admission-Token": token})
    assert resp.status == 201, await resp.text()
    app = client.app
    queue = QueueStore(app[CALLS], app[KEYS])
    assert not await queue.is_active("hall", visitor, manual_clock.now_ms())
    rooms = RoomStore(app[CALLS], app[KEYS])
    for _ in range(100):  # the sell-out is checked off the request path
        if (await rooms.stats("hall", manual_clock.now_ms(), 10_000)).sold_out:
            break
        await asyncio.sleep(0.05)
    assert (await rooms.stats("hall", manual_clock.now_ms(), 10_000)).sold_out

