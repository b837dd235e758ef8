"""The hold race on a Redis Cluster: hundreds of fans, through two ticketing replicas (each its
own cluster client), hold the same few seats at once. Exactly one winner per seat; every other
request is a clean 409; the inventory in Redis agrees with the winners."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from stagedoor.settings import Settings
from tests.support.cluster import event_body

FANS = 300
SEATS = 24


async def test_hundreds_of_concurrent_holds_on_the_same_seats_have_one_winner_per_seat(
        service_client: Any, cluster_settings: Settings, create_user: Any) -> None:
    replicas = [await service_client("ticketing", cluster_settings) for _ in range(2)]
    organizer = await create_user(roles=["organizer"])
    resp = await replicas[0].post("/api/events", json=event_body(SEATS), headers=organizer.headers)
    assert resp.status == 201, await resp.text()
    event_id = (await resp.json())["id"]
    seat_ids = [st["id"] for st in (await (await replicas[0].get(f"/api/events/{event_id}/seats")).json())["seats"]]
    fans = [await create_user() for _ in range(FANS)]
    rng = random.Random(9)
    wanted = [rng.sample(seat_ids, rng.randint(1, 3)) for _ in range(FANS)]
    start = asyncio.Event()

    async def hold(i: int) -> tuple[int, list[str], dict[str, Any]]:
        await start.wait()
        resp = await replicas[i % 2].post(f"/api/events/{event_id}/holds", json={"seats": wanted[i]},
                                          headers=fans[i].headers)
        return resp.status, wanted[i], await resp.json()

    tasks = [asyncio.create_task(hold(i)) for i in range(FANS)]
    await asyncio.sleep(0.05)
    start.set()
    results = await asyncio.gather(*tasks)
    statuses = sorted({status for status, _, _ in results})
    assert set(statuses) <= {201, 409}, statuses
    winners: dict[str, str] = {}
    for status, seats, body in results:
        if status == 201:
            for seat in seats:
                assert seat not in winners, f"seat {seat} held twice"
                winners[seat] = body["hold_id"]
        else:
            assert set(body["conflicts"]) & set(seats), body
    assert winners, "nobody won a seat"
    # A seat nobody won was wanted only by losers whose other seats were taken: the map agrees.
    seat_map = (await (await replicas[1].get(f"/api/events/{event_id}/seats")).json())["seats"]
    held = {st["id"] for st in seat_map if st["state"] == "held"}
    assert held == set(winners)
