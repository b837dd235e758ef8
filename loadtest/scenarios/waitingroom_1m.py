"""Scale of the queue: Redis memory per waiting visitor at 1,000,000 waiting, and join/status
latency at 1,000,000 waiting against 10,000 (the scripts are O(log N): ZADD, ZRANK).

Phases (``drive``), all on this scenario's own throwaway redis-server:
1. bulk-join 10,000 visitors (pipelined EVALSHA of lua/join_queue.lua, the real script);
   drive status polls, then joins, over HTTP (waiting room at 2 processes);
2. INFO memory, bulk-join up to 1,000,000 waiting, INFO memory again: the difference over
   the number added is the cost of one waiting visitor (queue entry, heartbeat bit, counters);
3. the same status and join loads at 1,000,000 waiting. The headline result is phase 3's status.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp
import redis.asyncio as redis_asyncio

from loadtest.driver import RunResult, WorkerState, run_load
from loadtest.scenario import BenchEnv, Figure, LoadConfig, ServerSpec, Target
from loadtest.scenarios._waitingroom import PREFIX, bench_room, bulk_join_at, create_room
from stagedoor.redis_keys import RedisKeys

READY = True
DESCRIPTION = "status at 1 M waiting (join/status latency 1 M vs 10 k, Redis bytes per waiting visitor)"
ROOM = "bench-1m"
SMALL, LARGE = 10_000, 1_000_000
LOAD = LoadConfig(processes=2, concurrency=16, duration_s=5.0, warmup_s=1.0, max_requests=500_000)
TARGETS = (
    Target("bytes_per_waiting_visitor", max_value=150.0, label="Redis bytes per waiting visitor at 1 M"),
    Target("status_p99_ratio_1m_vs_10k", max_value=1.5, label="status p99 at 1 M / at 10 k"),
    Target("join_p99_ratio_1m_vs_10k", max_value=1.5, label="join p99 at 1 M / at 10 k"),
    Target("p99_ms", max_value=50.0, label="status p99 at 1 M waiting"),
)
EXPECTED_STATUSES = frozenset({200, 201})
_FIGURES: dict[str, float] = {}


def servers(env: BenchEnv) -> list[ServerSpec]:
    return [env.stagedoor("waitingroom", processes=2, STAGEDOOR_RATE_LIMITS_ENABLED="false")]


async def _memory_and_waiting(redis_url: str) -> tuple[int, int]:
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        info = await client.info("memory")
        waiting = await client.zcard(RedisKeys(PREFIX).room_waiting(ROOM))
        return int(info["used_memory"]), int(waiting)
    finally:
        await client.aclose()


async def setup(env: BenchEnv) -> dict[str, Any]:
    await create_room(env.redis_url, bench_room(ROOM))
    base = env.url("waitingroom")
    return {"join": f"{base}/api/rooms/{ROOM}/join", "status": f"{base}/api/rooms/{ROOM}/status", "kind": "status"}


async def worker_setup(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> None:
    joined = await state.http.post(ctx["join"], json_body={})
    state.data["auth"] = {"Authorization": "Bearer " + joined.json()["queue_token"]}


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    if ctx["kind"] == "join":
        return (await state.http.post(ctx["join"], json_body={})).status
    return (await state.http.get(ctx["status"], headers=state.data["auth"])).status


def drive(env: BenchEnv, ctx: dict[str, Any], config: LoadConfig) -> RunResult:
    name = __name__.rsplit(".", 1)[-1]
    asyncio.run(bulk_join_at(env.redis_url, ROOM, SMALL))
    small_status = run_load(name, {**ctx, "kind": "status"}, env, config)
    small_join = run_load(name, {**ctx, "kind": "join"}, env, replace(config, max_requests=60_000))
    mem_before, waiting_before = asyncio.run(_memory_and_waiting(env.redis_url))
    asyncio.run(bulk_join_at(env.redis_url, ROOM, LARGE - waiting_before))
    mem_after, waiting_after = asyncio.run(_memory_and_waiting(env.redis_url))
    large_status = run_load(name, {**ctx, "kind": "status"}, env, config)
    large_join = run_load(name, {**ctx, "kind": "join"}, env, replace(config, max_requests=60_000))
    s10k, s1m = small_status.summary(), large_status.summary()
    j10k, j1m = small_join.summary(), large_join.summary()
    _FIGURES.update({
        "waiting_visitors": float(waiting_after),
        "bytes_per_waiting_visitor": round((mem_after - mem_before) / max(1, waiting_after - waiting_before), 1),
        "status_p50_ms_10k": s10k["p50_ms"], "status_p99_ms_10k": s10k["p99_ms"],
        "status_p50_ms_1m": s1m["p50_ms"], "status_p99_ms_1m": s1m["p99_ms"],
        "status_req_per_s_10k": s10k["req_per_s"], "status_req_per_s_1m": s1m["req_per_s"],
        "join_p50_ms_10k": j10k["p50_ms"], "join_p99_ms_10k": j10k["p99_ms"],
        "join_p50_ms_1m": j1m["p50_ms"], "join_p99_ms_1m": j1m["p99_ms"],
        "join_req_per_s_10k": j10k["req_per_s"], "join_req_per_s_1m": j1m["req_per_s"],
        "status_p99_ratio_1m_vs_10k": round(s1m["p99_ms"] / max(0.001, s10k["p99_ms"]), 2),
        "join_p99_ratio_1m_vs_10k": round(j1m["p99_ms"] / max(0.001, j10k["p99_ms"]), 2),
    })
    return large_status


async def figures(env: BenchEnv, ctx: dict[str, Any], result: RunResult) -> list[Figure]:
    units = {"bytes_per_waiting_visitor": "B"}
    return [Figure(k, v, units.get(k, "ms" if "_ms_" in k else "")) for k, v in _FIGURES.items()]
