"""The same Redis loss against real service processes (``stagedoor serve``: admission, waiting
room, ticketing and the worker), on a Redis server of this test's own: the services' own wiring
(settings, pools, the worker's run_id watch) keeps the gate through a FLUSHALL and brings the
room back within 10 s."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from loadtest.flashsale import SalePlan
from loadtest.scenarios.flash_sale import create_sale
from stagedoor.auth import mint_access_token
from stagedoor.embedded import EmbeddedRedis, free_port
from stagedoor.keys import KeyRing
from stagedoor.redis_keys import RedisKeys
from tests.support.stack import running_stack

ROOM = "procsale"
BACK_WITHIN_S = 10.0


async def _attack_through_a_flush(env: Any, ctx: Any, raw: redis_asyncio.Redis, keys: RedisKeys) -> dict[str, Any]:
    keyring = KeyRing.from_dir(Path(env.signing_keys_dir))
    fan = {"Authorization": "Bearer " + mint_access_token(keyring, subject=ctx.users[0], roles=["customer"],
                                                          ttl_s=600)}
    seen: list[tuple[float, int]] = []
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:

        async def attack() -> None:
            while not stop.is_set():
                try:
                    async with session.post(f"{ctx.ticketing}/api/events/{ctx.event_id}/holds",
                                            json={"seats": ["s1"]}, headers=fan) as resp:
                        seen.append((time.monotonic(), resp.status))
                except aiohttp.ClientError:
                    seen.append((time.monotonic(), 0))
                await asyncio.sleep(0.005)

        attacking = asyncio.create_task(attack())
        await asyncio.sleep(0.5)
        await raw.flushall()
        lost_at = time.monotonic()
        while True:
            async with session.get(f"{ctx.waitingroom}/rooms/{ROOM}") as resp:
                page = resp.status
            if page == 200:
                break
            assert time.monotonic() - lost_at < BACK_WITHIN_S, f"queue page still {page}"
            await asyncio.sleep(0.05)
        page_back_s = time.monotonic() - lost_at
        await asyncio.sleep(1.5)  # the attack goes on after the room is back
        stop.set()
        await attacking
        async with session.get(f"{env.url('admission')}/admin/rooms/{ROOM}", headers=env.admin_headers()) as resp:
            admin = (resp.status, await resp.json())
        async with session.patch(f"{env.url('admission')}/admin/rooms/{ROOM}", json={"rate_per_s": 7},
                                 headers=env.admin_headers()) as resp:
            patched = resp.status
    return {"seen": seen, "lost_at": lost_at, "page_back_s": page_back_s, "admin": admin, "patched": patched}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_flushall_under_real_processes_keeps_the_gate_and_the_room(database_url: str, redis_prefix: str,
                                                                   tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), persist=False).start()
    try:
        plan = SalePlan(fans=4, seats=20, seats_per_row=10, rate_per_s=20.0, max_active=100, processes=1)
        with running_stack(("admission", "waitingroom", "ticketing", "worker"), redis_url=server.url,
                           database_url=database_url, prefix=redis_prefix, workdir=tmp_path / "stack") as env:
            ctx = asyncio.run(create_sale(env, plan, ROOM))
            keys = RedisKeys(redis_prefix)

            async def run() -> dict[str, Any]:
                raw = redis_asyncio.Redis.from_url(server.url)
                try:
                    out = await _attack_through_a_flush(env, ctx, raw, keys)
                    out["link"] = await raw.get(keys.event_room(ctx.event_id))
                    out["rate"] = await raw.hget(keys.room_config(ROOM), "rate")
                    conn = await asyncpg.connect(database_url)
                    try:
                        out["pg_rate"] = await conn.fetchval("SELECT rate_per_s FROM rooms WHERE room_id = $1", ROOM)
                    finally:
                        await conn.close()
                    return out
                finally:
                    await raw.aclose()

            out = asyncio.run(run())
    finally:
        server.stop()
    statuses = [status for _, status in out["seen"]]
    assert 201 not in statuses, "a hold without an admission token succeeded"
    after = [status for t, status in out["seen"] if t > out["lost_at"]]
    assert after and set(after) <= {403, 503}, sorted(set(after))
    assert 403 in after
    assert out["page_back_s"] < BACK_WITHIN_S
    status, room = out["admin"]
    assert status == 200 and room["event_id"] == ctx.event_id and room["rate_per_s"] == 20.0
    assert out["link"] == ROOM.encode()
    assert out["patched"] == 200 and out["pg_rate"] == 7.0 and out["rate"] == b"7.0"
    print(f"queue page back in {out['page_back_s']:.2f}s; {len(statuses)} refused holds")
