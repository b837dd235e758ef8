"""Rooms are recorded in PostgreSQL and Redis is rebuilt from them (admin API over HTTP).

Tests that make Redis fail or lose data run on a Redis server of their own (never the shared
one): ``REPLICAOF`` an address where no master listens makes it a read-only replica that keeps
its data and answers reads but refuses every write (READONLY, a 503), which is "Redis failed
after the PostgreSQL write" for real; ``REPLICAOF NO ONE`` heals it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from rooms.durable import DurableRooms
from rooms.queue_store import QueueStore
from rooms.record_store import RoomRecords
from rooms.store import RoomStore
from stagedoor.embedded import EmbeddedRedis, free_port
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from tests.support.rooms import iso, room_config

PROBLEM = "application/problem+json"


class PrivateRedis:
    def __init__(self, data_dir: Path) -> None:
        self.server = EmbeddedRedis(data_dir, port=free_port(), persist=False).start()
        self.raw = redis_asyncio.Redis.from_url(self.server.url)

    async def restart(self) -> None:
        """Stop and start again on the same port and directory: it loads the last SAVE, with a
        new run_id."""
        await self.raw.aclose()
        self.server.stop()
        port, data_dir = self.server.port, self.server.data_dir
        await asyncio.sleep(0.2)
        self.server = EmbeddedRedis(data_dir, persist=False)
        self.server.port = port  # same address (free_port would dodge the port in TIME_WAIT)
        self.server.start()
        self.raw = redis_asyncio.Redis.from_url(self.server.url)


@pytest.fixture
async def private(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis")
    try:
        yield redis
    finally:
        await redis.raw.aclose()
        redis.server.stop()


@pytest.fixture
def private_redis(private: PrivateRedis) -> tuple[str, redis_asyncio.Redis]:
    return private.server.url, private.raw


@pytest.fixture
def private_settings(make_settings: Any, private_redis: tuple[str, Any]) -> Settings:
    return make_settings(redis_url=private_redis[0], rate_limits_enabled=False, admission_tick_ms=50)


async def calls_on(redis: redis_asyncio.Redis) -> RedisCalls:
    scripts = LuaScripts(redis)
    await scripts.load_all()
    return RedisCalls.batched(redis, scripts)


def body(**kw: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"event_id": "7", "opens_at": iso(-60), "starts_at": iso(-30), "rate_per_s": 5,
                              "max_active": 100, "session_ttl_s": 300, "abandon_after_s": 0,
                              "shop_url": "https://shop.example/"}
    values.update(kw)
    return values


async def cfg(raw: redis_asyncio.Redis, keys: RedisKeys, room: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (await raw.hgetall(keys.room_config(room))).items()}


async def eventually(check: Any, timeout_s: float = 5.0) -> float:
    """Seconds until ``check()`` (async) is true; fails after ``timeout_s``."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout_s, "not within the time allowed"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_admin_writes_land_in_postgresql(service_client: Any, settings: Settings, db: Any, redis_client: Any,
                                               admin_headers: dict[str, str]) -> None:
    keys = RedisKeys(settings.redis_key_prefix)
    adm = await service_client("admission", settings)
    assert (await adm.put("/admin/rooms/r1", json=body(title="Gala"), headers=admin_headers)).status == 201
    resp = await adm.patch("/admin/rooms/r1", json={"rate_per_s": 8, "event_id": "9", "sold_out": True},
                           headers=admin_headers)
    assert resp.status == 200, await resp.text()
    assert (await adm.post("/admin/rooms/r1/pause", headers=admin_headers)).status == 200
    row = await db.fetchrow("SELECT * FROM rooms WHERE room_id = 'r1'")
    assert (row["rate_per_s"], row["title"], row["paused"], row["sold_out"], row["version"]) == (
        8.0, "Gala", True, True, 3)
    assert [tuple(r) for r in await db.fetch("SELECT event_id, room_id FROM room_events")] == [("9", "r1")]
    await eventually(lambda: _no_pending(db))  # every copy landed (an ungating one is re-applied after 1 s)

    # An event is gated by one room at most: PostgreSQL refuses the second (409), nothing changes.
    resp = await adm.put("/admin/rooms/r2", json=body(event_id="9"), headers=admin_headers)
    assert resp.status == 409 and resp.content_type == PROBLEM
    assert (await resp.json())["room"] == "r1"
    assert await db.fetchval("SELECT count(*) FROM rooms WHERE room_id = 'r2'") == 0
    assert [tuple(r) for r in await db.fetch("SELECT event_id, room_id FROM room_events")] == [("9", "r1")]

    assert (await adm.delete("/admin/rooms/r1", headers=admin_headers)).status == 204
    assert await db.fetchval("SELECT count(*) FROM rooms") == 0
    assert await db.fetchval("SELECT count(*) FROM room_events") == 0
    assert await redis_client.get(keys.event_room("9")) is None
    assert await redis_client.get(keys.event_room("7")) is None
    assert not await redis_client.exists(keys.room_config("r1"))


async def test_a_redis_failure_after_the_commit_is_repaired(
        service_client: Any, private_settings: Settings, private_redis: tuple[str, Any], db: Any,
        admin_headers: dict[str, str]) -> None:
    _, raw = private_redis
    keys = RedisKeys(private_settings.redis_key_prefix)
    adm = await service_client("admission", private_settings)
    assert (await adm.put("/admin/rooms/r1", json=body(), headers=admin_headers)).status == 201

    await raw.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # writes refused, reads answered
    try:
        resp = await adm.patch("/admin/rooms/r1", json={"rate_per_s": 9, "paused": True}, headers=admin_headers)
        assert resp.status == 503 and resp.content_type == PROBLEM and "Retry-After" in resp.headers
        # Recorded in PostgreSQL (the admin's change is not lost), Redis still has the old copy.
        assert await db.fetchval("SELECT rate_per_s FROM rooms WHERE room_id = 'r1'") == 9.0
        assert await db.fetchval("SELECT count(*) FROM room_redis_pending WHERE room_id = 'r1'") == 1
        assert (await cfg(raw, keys, "r1"))["rate"] == "5.0"

        # Gating a new event needs Redis before the commit: refused whole, both stores unchanged.
        resp = await adm.put("/admin/rooms/r2", json=body(event_id="8"), headers=admin_headers)
        assert resp.status == 503
        assert await db.fetchval("SELECT count(*) FROM rooms WHERE room_id = 'r2'") == 0
        assert await raw.get(keys.event_room("8")) is None
    finally:
        await raw.execute_command("REPLICAOF", "NO", "ONE")

    async def repaired() -> bool:
        c = await cfg(raw, keys, "r1")
        return c.get("rate") == "9.0" and c.get("paused") == "1"

    took = await eventually(repaired)
    assert took < 5.0
    await eventually(lambda: _no_pending(db))
    resp = await adm.get("/admin/rooms/r1", headers=admin_headers)
    assert (await resp.json())["paused"] is True


async def _no_pending(db: Any) -> bool:
    return await db.fetchval("SELECT count(*) FROM room_redis_pending") == 0


async def test_flushall_brings_back_settings_link_sold_out_and_evictions(
        service_client: Any, private_settings: Settings, private_redis: tuple[str, Any], db: Any,
        admin_headers: dict[str, str]) -> None:
    _, raw = private_redis
    keys = RedisKeys(private_settings.redis_key_prefix)
    adm = await service_client("admission", private_settings)
    resp = await adm.put("/admin/rooms/r1", json=body(event_id="7", mode="lottery", pow_difficulty=3, title="Tour"),
                         headers=admin_headers)
    assert resp.status == 201
    assert (await adm.post("/admin/rooms/r1/pause", headers=admin_headers)).status == 200
    assert (await adm.patch("/admin/rooms/r1", json={"sold_out": True}, headers=admin_headers)).status == 200
    visitor = "k1_" + uuid.uuid4().hex[:12]
    assert (await adm.delete(f"/admin/rooms/r1/visitors/{visitor}", headers=admin_headers)).status == 204
    before = await cfg(raw, keys, "r1")

    await raw.flushall()
    took = await eventually(lambda: raw.exists(keys.room_config("r1")), timeout_s=10.0)
    assert took < 10.0
    await eventually(lambda: raw.sismember(keys.room_evicted("r1"), visitor))
    assert await cfg(raw, keys, "r1") == before
    assert await raw.get(keys.event_room("7")) == b"r1"
    assert await raw.hget(keys.room_state("r1"), "sold_out") == b"1"
    assert await raw.sismember(keys.rooms_index(), "r1")
    resp = await adm.get("/admin/rooms/r1", headers=admin_headers)
    out = await resp.json()
    assert (out["mode"], out["paused"], out["sold_out"], out["title"], out["pow_difficulty"]) == (
        "lottery", True, True, "Tour", 3)


async def test_a_restart_from_an_older_snapshot_is_rebuilt_although_its_marker_survived(
        service_client: Any, private_settings: Settings, private: PrivateRedis, make_event: Any, db: Any,
        admin_headers: dict[str, str]) -> None:
    keys = RedisKeys(private_settings.redis_key_prefix)
    shop = await service_client("ticketing", private_settings)
    first, second = (await make_event(shop))["id"], (await make_event(shop))["id"]
    adm = await service_client("admission", private_settings)
    resp = await adm.put("/admin/rooms/r1", json=body(rate_per_s=2, event_id=first), headers=admin_headers)
    assert resp.status == 201
    await eventually(lambda: private.raw.exists(keys.rooms_restored()))
    await private.raw.save()  # the snapshot: rate 2, the first event's gate, the marker
    resp = await adm.patch("/admin/rooms/r1", json={"rate_per_s": 12, "event_id": second}, headers=admin_headers)
    assert resp.status == 200
    await eventually(lambda: _no_pending(db))  # the ungating write's second unlink is done too
    assert await private.raw.get(keys.event_room(first)) is None
    old_run_id = (await private.raw.info("server"))["run_id"]

    await private.restart()  # back to the snapshot, with a new run_id and the marker present
    raw = private.raw
    assert (await raw.info("server"))["run_id"] != old_run_id
    assert await raw.exists(keys.rooms_restored())

    async def rebuilt() -> bool:  # the config, its event's gate, and no gate PostgreSQL no longer has
        return ((await cfg(raw, keys, "r1")).get("rate") == "12.0"
                and await raw.get(keys.event_room(second)) == b"r1" and await raw.get(keys.event_room(first)) is None)

    took = await eventually(rebuilt, timeout_s=10.0)
    assert took < 10.0


async def test_the_waiting_room_restores_a_missed_room_itself_and_refuses_unknown_ids_from_memory(
        service_client: Any, private_settings: Settings, private_redis: tuple[str, Any], db: Any) -> None:
    _, raw = private_redis
    keys = RedisKeys(private_settings.redis_key_prefix)
    # The record only (no admission service running: no rebuild loop, only the miss path).
    calls = await calls_on(raw)
    durable = DurableRooms(RoomRecords(db), RoomStore(calls, keys), QueueStore(calls, keys))

    async def nothing(new_event_id: str | None, old_event_id: str | None) -> None:
        return None

    await durable.records.put(room_config("r1", event_id="7", starts_at_ms=int(time.time() * 1000) - 1000,
                                          opens_at_ms=int(time.time() * 1000) - 2000), nothing)
    assert not await raw.exists(keys.room_config("r1"))
    wr = await service_client("waitingroom", private_settings)
    resp = await wr.get("/rooms/r1")
    assert resp.status == 200, await resp.text()
    assert await raw.exists(keys.room_config("r1"))
    assert await raw.get(keys.event_room("7")) == b"r1"
    resp = await wr.post("/api/rooms/r1/join", json={})
    assert resp.status == 201, await resp.text()

    # Unknown ids: 404, and PostgreSQL is asked for the room ids at most once per 2 s.
    from waitingroom.appkeys import ROOM
    from waitingroom.room_restore import MissRestore

    miss = wr.app[ROOM].restore
    assert isinstance(miss, MissRestore)
    reads = 0
    records = miss.restorer.durable.records
    real_ids = records.ids

    async def counted_ids() -> set[str]:
        nonlocal reads
        reads += 1
        return await real_ids()

    records.ids = counted_ids  # type: ignore[method-assign]
    wr.session.cookie_jar.clear()
    statuses = [(await wr.get(f"/rooms/x{uuid.uuid4().hex[:10]}")).status for _ in range(100)]
    assert set(statuses) == {404}
    assert reads <= 1
    assert not [k async for k in raw.scan_iter(match=f"{keys.prefix}:{{room:x*")]  # nothing written for them


async def test_a_stale_copy_never_replaces_a_newer_one(redis_client: Any, redis_prefix: str) -> None:
    keys = RedisKeys(redis_prefix)
    rooms = RoomStore(await calls_on(redis_client), keys)
    now = int(time.time() * 1000)
    assert await rooms.apply(room_config("r1", rate_per_s=7.0), 5, now) == "created"
    assert await rooms.apply(room_config("r1", rate_per_s=3.0), 4, now) == "stale"
    assert (await rooms.require("r1")).rate_per_s == 7.0
    assert await rooms.apply(room_config("r1", rate_per_s=3.0), 6, now) == "replaced"
    assert (await rooms.require("r1")).rate_per_s == 3.0


async def test_a_room_created_before_rooms_were_recorded_is_adopted(
        service_client: Any, settings: Settings, redis_client: Any, db: Any, admin_headers: dict[str, str]) -> None:
    keys = RedisKeys(settings.redis_key_prefix)
    rooms = RoomStore(await calls_on(redis_client), keys)
    now = int(time.time() * 1000)
    await rooms.put(room_config("old", event_id="5", opens_at_ms=now - 60_000, starts_at_ms=now - 30_000), now)
    await redis_client.sadd(keys.room_evicted("old"), "k1_gone")
    adm = await service_client("admission", settings)

    async def adopted() -> bool:
        return await db.fetchval("SELECT count(*) FROM rooms WHERE room_id = 'old'") == 1

    await eventually(adopted)
    assert await db.fetchval("SELECT room_id FROM room_events WHERE event_id = '5'") == "old"
    assert await db.fetchval("SELECT visitor_id FROM room_evictions WHERE room_id = 'old'") == "k1_gone"
    resp = await adm.get("/admin/rooms/old", headers=admin_headers)
    assert resp.status == 200


async def test_fans_polling_through_a_flush_never_see_a_404(
        service_client: Any, private_settings: Settings, private_redis: tuple[str, Any], db: Any) -> None:
    _, raw = private_redis
    keys = RedisKeys(private_settings.redis_key_prefix)
    calls = await calls_on(raw)
    durable = DurableRooms(RoomRecords(db), RoomStore(calls, keys), QueueStore(calls, keys))
    now = int(time.time() * 1000)

    async def nothing(new_event_id: str | None, old_event_id: str | None) -> None:
        return None

    # Paused: every fan stays waiting (only the miss path runs here, no admission service).
    written = await durable.records.put(room_config("r1", paused=True, opens_at_ms=now - 60_000,
                                                    starts_at_ms=now - 30_000), nothing)
    await durable.apply(written.record)
    wr = await service_client("waitingroom", private_settings)
    tokens = []
    for _ in range(40):
        resp = await wr.post("/api/rooms/r1/join", json={})
        assert resp.status == 201, await resp.text()
        tokens.append((await resp.json())["queue_token"])
        wr.session.cookie_jar.clear()

    await raw.flushall()
    answers = await asyncio.gather(*(wr.get("/api/rooms/r1/status", headers={"Authorization": f"Bearer {t}"})
                                     for t in tokens))
    assert [a.status for a in answers] == [200] * len(tokens)
    assert {(await a.json())["state"] for a in answers} == {"expired"}  # places lost: they rejoin
    resp = await wr.post("/api/rooms/r1/join", json={}, headers={"Authorization": f"Bearer {tokens[0]}"})
    assert resp.status in (200, 201) and (await resp.json())["state"] == "waiting"
    assert (await resp.json())["position"] == 1  # the first to come back is first


async def test_one_room_per_event_is_enforced_by_postgresql_even_under_concurrent_puts(
        service_client: Any, settings: Settings, db: Any, redis_client: Any, admin_headers: dict[str, str]) -> None:
    keys = RedisKeys(settings.redis_key_prefix)
    adm = await service_client("admission", settings)
    rooms = [f"c{i}" for i in range(8)]
    answers = await asyncio.gather(*(adm.put(f"/admin/rooms/{r}", json=body(event_id="77"), headers=admin_headers)
                                     for r in rooms))
    statuses = sorted(a.status for a in answers)
    assert statuses == [201] + [409] * 7, statuses
    winner = rooms[[a.status for a in answers].index(201)]
    assert [tuple(r) for r in await db.fetch("SELECT event_id, room_id FROM room_events")] == [("77", winner)]
    assert [r["room_id"] for r in await db.fetch("SELECT room_id FROM rooms")] == [winner]  # the losers left nothing
    assert await redis_client.get(keys.event_room("77")) == winner.encode()
    for loser in set(rooms) - {winner}:
        assert not await redis_client.exists(keys.room_config(loser))
    # The rule is PostgreSQL's own, not only the API's.
    await db.execute("INSERT INTO rooms (room_id, mode, opens_at_ms, starts_at_ms, rate_per_s, max_active, "
                     "session_ttl_s, abandon_after_s, pow_difficulty) VALUES ('other', 'fifo', 0, 0, 1, 1, 60, 0, 0)")
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute("INSERT INTO room_events (event_id, room_id) VALUES ('77', 'other')")


@pytest.mark.parametrize("field", ["title", "shop_url"])
async def test_a_nul_character_is_a_400_that_records_nothing(service_client: Any, settings: Settings, db: Any,
                                                              redis_client: Any, admin_headers: dict[str, str],
                                                              field: str) -> None:
    keys = RedisKeys(settings.redis_key_prefix)
    adm = await service_client("admission", settings)
    resp = await adm.put("/admin/rooms/r1", json=body(**{field: "/a\u0000b"}), headers=admin_headers)
    assert resp.status in (400, 422) and resp.content_type == PROBLEM
    assert await db.fetchval("SELECT count(*) FROM rooms") == 0
    assert not await redis_client.exists(keys.room_config("r1"))
    assert await redis_client.get(keys.event_room("7")) is None
    assert (await adm.put("/admin/rooms/r1", json=body(), headers=admin_headers)).status == 201
    resp = await adm.patch("/admin/rooms/r1", json={field: "/x\u0000"}, headers=admin_headers)
    assert resp.status in (400, 422) and resp.content_type == PROBLEM
    assert await db.fetchval("SELECT version FROM rooms WHERE room_id = 'r1'") == 1


async def test_a_room_of_an_event_sold_out_in_postgresql_is_restored_sold_out(
        service_client: Any, settings: Settings, make_event: Any, db: Any, redis_client: Any) -> None:
    keys = RedisKeys(settings.redis_key_prefix)
    shop = await service_client("ticketing", settings)
    event = await make_event(shop)
    calls = await calls_on(redis_client)
    durable = DurableRooms(RoomRecords(db), RoomStore(calls, keys), QueueStore(calls, keys))

    async def nothing(new_event_id: str | None, old_event_id: str | None) -> None:
        return None

    await durable.records.put(room_config("r1", event_id=event["id"]), nothing)
    await durable.restore("r1")
    assert await redis_client.hget(keys.room_state("r1"), "sold_out") is None  # on sale: not sold out
    # Ticketing marked the event sold out in PostgreSQL; Redis then lost the room.
    await db.execute("UPDATE events SET status = 'sold_out' WHERE id = $1", int(event["id"]))
    await redis_client.delete(keys.room_config("r1"), keys.room_state("r1"))
    record = await durable.restore("r1")
    assert record is not None and record.sold_out
    assert await redis_client.hget(keys.room_state("r1"), "sold_out") == b"1"
