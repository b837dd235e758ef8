"""Redis is a cache of holdable state; PostgreSQL is the truth of what is sold.

Each test runs its own redis-server (never the shared one) and loses its data: FLUSHALL,
a restart without persistence, a restart from an older snapshot. The inventory is rebuilt
from PostgreSQL: sold seats stay sold, holds in flight are lost, other seats are free.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from stagedoor.clock import ManualClock
from stagedoor.embedded import EmbeddedRedis
from stagedoor.web import SETTINGS
from ticketing.appkeys import CLOCK, HOLDS, INVENTORY, METRICS
from ticketing.catalog.hold_sweeper import HoldSweeper


def _restart(data_dir: Path, port: int, persist: bool) -> EmbeddedRedis:
    """A new redis-server on the same port (redis binds with SO_REUSEADDR; free_port() would not)."""
    server = EmbeddedRedis(data_dir, persist=persist)
    server.port = port
    return server.start()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "own-redis", persist=False).start()
    try:
        yield server
    finally:
        server.stop()


async def _sell_in_postgres(db: Any, user_id: str, event_id: str, hold_id: str, seats: list[str]) -> None:
    """What a committed purchase leaves in PostgreSQL (tables of migration 0004)."""
    order_id = uuid.uuid4()
    await db.execute("INSERT INTO orders (id, user_id, event_id, hold_id, subtotal, total, currency, email) "
                     "VALUES ($1, $2::uuid, $3, $4, 0, 0, 'EUR', 'x@example.test')",
                     order_id, user_id, int(event_id), hold_id)
    for seat in seats:
        await db.execute("INSERT INTO tickets (id, order_id, event_id, seat_id, tier, price, code) "
                         "VALUES ($1, $2, $3, $4, 'A', 0, $5)", uuid.uuid4(), order_id, int(event_id), seat,
                         uuid.uuid4().hex)


async def _buy(client: Any, db: Any, user: Any, event_id: str, seats: list[str], clock: ManualClock) -> None:
    resp = await client.post(f"/api/events/{event_id}/holds", json={"seats": seats}, headers=user.headers)
    assert resp.status == 201, await resp.text()
    store = client.app[HOLDS]
    hold = await store.get_hold((await resp.json())["hold_id"])
    locked = await store.lock_for_payment(hold, clock.now_ms(), 60_000)
    await _sell_in_postgres(db, user.id, event_id, hold.id, seats)
    await store.confirm_sold(locked, clock.now_ms())


async def _states(client: Any, event_id: str) -> dict[str, str]:
    resp = await client.get(f"/api/events/{event_id}/seats")
    assert resp.status == 200, await resp.text()
    return {s["id"]: s["state"] for s in (await resp.json())["seats"]}


async def test_flushall_mid_sale_rebuilds_from_postgresql(own_redis, make_settings, clocked_client, make_event,
                                                          create_user, db, manual_clock: ManualClock) -> None:
    client = await clocked_client(make_settings(redis_url=own_redis.url))
    event = await make_event(client)
    ev = event["id"]
    buyer, holder, other = await create_user(), await create_user(), await create_user()
    await _buy(client, db, buyer, ev, ["s3", "s4"], manual_clock)
    held = await (await client.post(f"/api/events/{ev}/holds", json={"seats": ["s1", "s2"]},
                                    headers=holder.headers)).json()
    raw = redis_asyncio.Redis.from_url(own_redis.url)
    await raw.flushall()  # our own server only
    await raw.aclose()
    # the next read notices the loss and rebuilds: sold stays sold, the hold in flight is gone
    states = await _states(client, ev)
    assert states["s3"] == states["s4"] == "sold"
    assert states["s1"] == states["s2"] == "free"
    assert (await client.get(f"/api/holds/{held['hold_id']}", headers=holder.headers)).status == 404
    # the sale continues; nobody can hold a sold seat
    assert (await client.post(f"/api/events/{ev}/holds", json={"seats": ["s1"]}, headers=holder.headers)).status == 201
    resp = await client.post(f"/api/events/{ev}/holds", json={"seats": ["s4", "s5"]}, headers=other.headers)
    assert resp.status == 409 and (await resp.json())["conflicts"] == ["s4"]
    detail = await (await client.get(f"/api/events/{ev}")).json()
    assert {t["code"]: (t["available"], t["sold"]) for t in detail["tiers"]} == {"A": (47, 2), "B": (50, 0)}


async def test_a_hold_after_flushall_rebuilds_and_succeeds(own_redis, make_settings, clocked_client, make_event,
                                                           create_user, db, manual_clock: ManualClock) -> None:
    client = await clocked_client(make_settings(redis_url=own_redis.url))
    event = await make_event(client)
    ev = event["id"]
    await _buy(client, db, await create_user(), ev, ["s7"], manual_clock)
    raw = redis_asyncio.Redis.from_url(own_redis.url)
    await raw.flushall()
    await raw.aclose()
    fan = await create_user()
    resp = await client.post(f"/api/events/{ev}/holds", json={"seats": ["s7"]}, headers=fan.headers)
    assert resp.status == 409  # rebuilt on the spot: s7 is sold per PostgreSQL
    resp = await client.post(f"/api/events/{ev}/holds", json={"seats": ["s8"]}, headers=fan.headers)
    assert resp.status == 201


async def test_a_redis_restart_without_persistence_rebuilds_and_reloads_scripts(
        tmp_path, make_settings, clocked_client, make_event, create_user, db, manual_clock: ManualClock) -> None:
    server = EmbeddedRedis(tmp_path / "r1", persist=False).start()
    try:
        client = await clocked_client(make_settings(redis_url=server.url))
        event = await make_event(client)
        ev = event["id"]
        await _buy(client, db, await create_user(), ev, ["s1"], manual_clock)
        server.stop()
        server = _restart(tmp_path / "r2", server.port, persist=False)
        fan = await create_user()
        for _ in range(3):  # the pool's first use after the restart may hit a dead connection
            resp = await client.post(f"/api/events/{ev}/holds", json={"seats": ["s1", "s2"]}, headers=fan.headers)
            if resp.status != 503:
                break
        assert resp.status == 409 and (await resp.json())["conflicts"] == ["s1"]
        assert (await client.post(f"/api/events/{ev}/holds", json={"seats": ["s2"]},
                                  headers=fan.headers)).status == 201
    finally:
        server.stop()


async def test_the_worker_rebuilds_after_a_restart_from_an_older_snapshot(
        tmp_path, make_settings, clocked_client, make_event, create_user, db, manual_clock: ManualClock) -> None:
    """A restart that keeps its data can still lose sales (snapshot older than the last purchase):
    the sweeper notices Redis's new run_id and rebuilds every sellable event."""
    data = tmp_path / "snap"
    server = EmbeddedRedis(data, persist=True).start()
    try:
        client = await clocked_client(make_settings(redis_url=server.url))
        event = await make_event(client)
        ev = event["id"]
        sweeper = HoldSweeper(client.app[INVENTORY], client.app[SETTINGS], client.app[METRICS], client.app[CLOCK])
        await sweeper.check_redis(client.app[INVENTORY])  # remembers the run_id
        raw = redis_asyncio.Redis.from_url(server.url)
        await raw.save()
        await raw.aclose()
        await _buy(client, db, await create_user(), ev, ["s5"], manual_clock)  # after the snapshot
        assert server.process is not None
        server.process.kill()  # no save on the way down: the snapshot lacks the sale
        server.process.wait()
        server = _restart(data, server.port, persist=True)
        stale = redis_asyncio.Redis.from_url(server.url)
        assert await stale.hget(client.app[HOLDS].keys.inventory_seats(ev), "s5") == b"0"
        await stale.aclose()
        for _ in range(3):
            try:
                await sweeper.check_redis(client.app[INVENTORY])
                break
            except Exception:  # a pooled connection from before the restart
                continue
        assert (await _states(client, ev))["s5"] == "sold"
    finally:
        server.stop()


async def test_rebuild_event_inventory_drops_holds_and_keeps_sales(clocked_client, make_event, create_user, db,
                                                                   manual_clock: ManualClock) -> None:
    client = await clocked_client()
    event = await make_event(client)
    ev = event["id"]
    await _buy(client, db, await create_user(), ev, ["s9"], manual_clock)
    fan = await create_user()
    held = await (await client.post(f"/api/events/{ev}/holds", json={"seats": ["s10"]}, headers=fan.headers)).json()
    assert await client.app[INVENTORY].rebuild_event_inventory(ev) is True
    states = await _states(client, ev)
    assert states["s9"] == "sold" and states["s10"] == "free"
    assert (await client.get(f"/api/holds/{held['hold_id']}", headers=fan.headers)).status == 404
    # the user's one-hold marker went with it
    assert (await client.post(f"/api/events/{ev}/holds", json={"seats": ["s10"]}, headers=fan.headers)).status == 201
