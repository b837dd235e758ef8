"""GET /healthz on the waiting room: a request its hot HTTP layer (stagedoor/hot_http.py) does not
serve itself but passes to aiohttp on the same connection. Beside ``healthz`` (the same route on
ticketing, whose app has no hot routes: aiohttp alone), the difference is what the pass-through
costs every request that is not a status poll or a join (pages, static files, metrics).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from loadtest.driver import WorkerState
from loadtest.scenario import BenchEnv, LoadConfig, ServerSpec, Target

READY = True
DESCRIPTION = "GET /healthz on the waiting room (passed to aiohttp by the hot layer), 2 server processes"
LOAD = LoadConfig(processes=2, concurrency=32, duration_s=10.0, warmup_s=2.0, max_requests=2_000_000)
TARGETS = (
    Target("req_per_s", limit="hello_2p", min_ratio=0.5, label="waiting room healthz req/s vs hello world (2 procs)"),
    Target("p99_ms", max_value=50.0, label="waiting room healthz p99"),
)


def servers(env: BenchEnv) -> list[ServerSpec]:
    return [env.stagedoor("waitingroom", processes=2)]


async def setup(env: BenchEnv) -> dict[str, Any]:
    return {"url": env.url("waitingroom") + "/healthz"}


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    response = await state.http.get(ctx["url"])
    return response.status
