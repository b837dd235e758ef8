"""The worker's hold sweeper loop, end to end: an expired hold is reclaimed in the background,
announced once as BookingExpired, and the inventory gauges are exported."""

from __future__ import annotations

import asyncio

from stagedoor.clock import ManualClock
from stagedoor.web import METRICS
from ticketing.appkeys import CLOCK
from ticketing.worker import create_worker_app


async def test_the_worker_loop_reclaims_and_announces_expired_holds(aiohttp_client, make_settings, keyring,
                                                                    clocked_client, make_event, create_user, db,
                                                                    manual_clock: ManualClock) -> None:
    settings = make_settings(hold_sweep_interval_s=0.05)
    shop = await clocked_client(settings)
    event = await make_event(shop, hold_ttl_s=30)
    fan = await create_user()
    resp = await shop.post(f"/api/events/{event['id']}/holds", json={"seats": ["s1", "s2"]}, headers=fan.headers)
    hold = await resp.json()
    worker_app = create_worker_app(settings, keyring)
    worker_app[CLOCK] = manual_clock  # the same movable clock as the shop
    worker = await aiohttp_client(worker_app)
    manual_clock.advance(30_000)
    rows = []
    for _ in range(200):  # up to ~10 s on a busy machine; usually a few ticks
        rows = await db.fetch("SELECT aggregate_id, payload FROM outbox WHERE event_type = 'BookingExpired'")
        if rows:
            break
        await asyncio.sleep(0.05)
    assert [r["aggregate_id"] for r in rows] == [hold["hold_id"]]
    await asyncio.sleep(0.3)  # more ticks: still announced once
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE event_type = 'BookingExpired'") == 1
    detail = await (await shop.get(f"/api/events/{event['id']}")).json()
    assert {t["code"]: t["available"] for t in detail["tiers"]} == {"A": 50, "B": 50}
    text = (await (await worker.get("/metrics")).text())
    assert f'ticketing_inventory_tickets{{event="{event["id"]}",state="free"}} 100.0' in text
    assert worker.app[METRICS].holds_swept_total._value.get() == 1  # type: ignore[attr-defined]
