"""GET /healthz on the ticketing service: the cost of our request skeleton (the edge) with no store behind it.

Compare with the bare aiohttp hello-world handler measured in the same run (``hello_2p``): the
ratio is what request ids, metrics, problem+json and security headers cost before any real work.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from loadtest.driver import WorkerState
from loadtest.scenario import BenchEnv, LoadConfig, ServerSpec, Target

READY = True
DESCRIPTION = "GET /healthz on ticketing (2 server processes)"
LOAD = LoadConfig(processes=2, concurrency=32, duration_s=10.0, warmup_s=2.0, max_requests=2_000_000)
TARGETS = (
    Target("req_per_s", limit="hello_2p", min_ratio=0.5, label="healthz req/s vs hello world (2 procs)"),
    Target("p99_ms", max_value=50.0, label="healthz p99"),
)


def servers(env: BenchEnv) -> list[ServerSpec]:
    return [env.stagedoor("ticketing", processes=2)]


async def setup(env: BenchEnv) -> dict[str, Any]:
    return {"url": env.url("ticketing") + "/healthz"}


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    # state.http: the driver's lean keep-alive client, so the load generator leaves CPU to the server
    # (the same client measured hello_2p). The aiohttp `session` works too: compare with hello_2p_aiohttp.
    response = await state.http.get(ctx["url"])
    return response.status
