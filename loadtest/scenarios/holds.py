"""Seat holds over HTTP: one timed request = POST /api/events/{id}/holds for one seat, by a
signed-in user, ticketing at 2 processes. Every request is meant to succeed (201).

A user may have one live hold per event, so each task is one user cycling over EVENTS small
events (one seat per task in each) whose holds expire after 5 s: by the time a task comes back
to an event its previous hold there has expired, and expired holds count as free (no sweeper
runs). Each user's access token is verified once per server process and then cached, as for
a fan who browsed before holding. Rate limits are off (one client IP).

Compared in the same run with the bare stack: an aiohttp handler doing one EVALSHA
(``evalsha_2p``) and redis-benchmark EVALSHA of lua/hold_seats.lua itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from loadtest.driver import WorkerState
from loadtest.limits import RedisScriptBench
from loadtest.scenario import BenchEnv, LoadConfig, ServerSpec, Target
from loadtest.scenarios._accounts import bench_accounts

READY = True
DESCRIPTION = "POST hold (1 seat) by a signed-in user, ticketing at 2 processes"
EVENTS = 1_200  # a task comes back to an event after EVENTS requests: > HOLD_TTL_S even at 8 k holds/s
HOLD_TTL_S = 5
LOAD = LoadConfig(processes=2, concurrency=24, duration_s=10.0, warmup_s=2.0, max_requests=2_000_000)
TARGETS = (
    Target("req_per_s", min_value=5_000.0, label="holds/s"),
    Target("p99_ms", max_value=100.0, label="hold p99"),
    Target("req_per_s", limit="evalsha_2p", min_ratio=0.3,
           label="holds/s vs aiohttp handler doing one EVALSHA (2 procs)"),
    Target("req_per_s", limit="redis_hold_seats_p1", min_ratio=0.05,
           label="holds/s vs redis-benchmark EVALSHA hold_seats"),
)
EXPECTED_STATUSES = frozenset({201})

_EV = "bench:{ev:1}"


async def _prepare_hold_bench(redis: Any) -> None:
    """50,000 free seats, holds that expire at once (so every call holds: the write path)."""
    await redis.hset(f"{_EV}:inv:meta", mapping={"status": "on_sale", "currency": "EUR", "max_per_order": 4,
                                                  "hold_ttl_ms": 0})
    await redis.hset(f"{_EV}:inv:tiers", mapping={"p:A": 100, "f:A": 50_000, "c:A": 50_000, "s:A": 0})
    for start in range(0, 50_000, 5_000):
        await redis.hset(f"{_EV}:inv:seats", mapping={f"s{i:012d}": "0" for i in range(start, start + 5_000)})
        await redis.hset(f"{_EV}:inv:seat_tiers", mapping={f"s{i:012d}": "A" for i in range(start, start + 5_000)})


REDIS_LIMITS = (RedisScriptBench(
    name="hold_seats", script="hold_seats", keyspace=50_000, prepare=_prepare_hold_bench,
    label="Redis EVALSHA lua/hold_seats.lua (2 random seats of 50,000)",
    keys=tuple(f"{_EV}:{k}" for k in ("inv:meta", "inv:tiers", "inv:seats", "inv:seat_tiers", "holds:expiry",
                                      "holds:rec", "holds:users", "room")),
    args=("1-h__rand_int__", "u__rand_int__", "1700000000000", "1", "", "0", "s__rand_int__", "s__rand_int__"),
),)


def servers(env: BenchEnv) -> list[ServerSpec]:
    return [env.stagedoor("ticketing", processes=2, STAGEDOOR_RATE_LIMITS_ENABLED="false")]


async def setup(env: BenchEnv) -> dict[str, Any]:
    tasks = LOAD.processes * LOAD.concurrency
    org_token, tokens = await bench_accounts(env, tasks, "holds")
    org_auth = {"Authorization": "Bearer " + org_token}
    body = {
        "title": "Bench holds", "category": "concert", "currency": "EUR",
        "venue": {"name": "Bench Hall", "city": "Benchville"},
        "starts_at": "2030-06-01T19:00:00Z", "ends_at": "2030-06-01T22:00:00Z",
        "tiers": [{"code": "A", "name": "Hall", "price": 4500}], "hold_ttl_s": HOLD_TTL_S,
        "seat_map": {"sections": [{"name": "S", "rows": [
            {"label": "R", "seats": [{"number": str(n), "tier": "A"} for n in range(1, tasks + 1)]}]}]},
        "max_tickets_per_order": 4,
    }
    base = env.url("ticketing")
    limit = asyncio.Semaphore(8)

    async def create(session: aiohttp.ClientSession) -> str:
        async with limit, session.post(base + "/api/events", json=body, headers=org_auth,
                                       timeout=aiohttp.ClientTimeout(total=60)) as resp:
            if resp.status != 201:
                raise RuntimeError(f"event create failed: {resp.status} {await resp.text()}")
            return str((await resp.json())["id"])

    async with aiohttp.ClientSession() as session:
        events = await asyncio.gather(*(create(session) for _ in range(EVENTS)))
    return {"base": base, "events": events, "tokens": tokens}


async def worker_setup(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> None:
    i = state.global_index
    state.data["auth"] = {"Authorization": "Bearer " + ctx["tokens"][i]}
    state.data["body"] = {"seats": [f"s{i + 1}"]}
    state.data["urls"] = [f"{ctx['base']}/api/events/{ev}/holds" for ev in ctx["events"]]
    state.data["k"] = (i * 17) % len(ctx["events"])


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    urls = state.data["urls"]
    k = state.data["k"]
    state.data["k"] = (k + 1) % len(urls)
    resp = await state.http.post(urls[k], json_body=state.data["body"], headers=state.data["auth"])
    return resp.status
