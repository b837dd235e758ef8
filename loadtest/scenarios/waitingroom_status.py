"""GET /api/rooms/{room}/status with a Bearer queue token: each concurrent task is one visitor
(joined once, untimed) polling its position; waiting room at 2 processes, rate limits off.
100,000 visitors wait ahead (bulk-joined), so ZRANK works on a realistic queue.

Compared in the same run with the hello-world handler (``hello_2p``).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from loadtest.driver import WorkerState
from loadtest.scenario import BenchEnv, LoadConfig, ServerSpec, Target
from loadtest.scenarios._waitingroom import bench_room, bulk_join_at, create_room

READY = True
DESCRIPTION = "GET status (Bearer queue token) on the waiting room, 100 k waiting, 2 server processes"
ROOM = "bench-status"
AHEAD = 100_000
LOAD = LoadConfig(processes=2, concurrency=32, duration_s=10.0, warmup_s=2.0, max_requests=2_000_000)
TARGETS = (
    Target("req_per_s", limit="hello_2p", min_ratio=0.5, label="status/s vs hello world (2 procs)"),
    # no target of its own: how close to a bare handler making the same one pipelined Redis call
    Target("req_per_s", limit="evalsha_pipelined_2p", label="status/s vs bare handler + one pipelined EVALSHA"),
    Target("p99_ms", max_value=50.0, label="status p99"),
)
# hello_2p is measured again in rounds alternating with this load (loadtest.bench.run_interleaved):
# the ratio to hello world is this scenario's headline figure, and the host drifts over minutes
INTERLEAVED = "hello_2p"
EXPECTED_STATUSES = frozenset({200})


def servers(env: BenchEnv) -> list[ServerSpec]:
    return [env.stagedoor("waitingroom", processes=2, STAGEDOOR_RATE_LIMITS_ENABLED="false")]


async def setup(env: BenchEnv) -> dict[str, Any]:
    await create_room(env.redis_url, bench_room(ROOM))
    await bulk_join_at(env.redis_url, ROOM, AHEAD)
    base = env.url("waitingroom")
    return {"join": f"{base}/api/rooms/{ROOM}/join", "status": f"{base}/api/rooms/{ROOM}/status"}


async def worker_setup(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> None:
    joined = await state.http.post(ctx["join"], json_body={})
    state.data["auth"] = {"Authorization": "Bearer " + joined.json()["queue_token"]}


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    response = await state.http.get(ctx["status"], headers=state.data["auth"])
    return response.status
