"""GET /healthz on the waiting room: a request its hot HTTP layer (stagedoor/hot_http/) does not
serve itself but passes to aiohttp on the same connection. Beside ``healthz`` (the same route on
ticketing, whose app has no hot routes: aiohttp alone), the difference is what the pass-through
costs every request that is not a status poll or a join (pages, static files, metrics).
"""

from __future__ import annotations

from typing import Any

from loadtest.scenario import BenchEnv, ServerSpec, Target
from loadtest.scenarios.healthz import LOAD, request

READY = True
DESCRIPTION = "GET /healthz on the waiting room (passed to aiohttp by the hot layer), 2 server processes"
TARGETS = (
    Target("req_per_s", limit="hello_2p", min_ratio=0.5, label="waiting room healthz req/s vs hello world (2 procs)"),
    Target("p99_ms", max_value=50.0, label="waiting room healthz p99"),
)
__all__ = ["DESCRIPTION", "LOAD", "READY", "TARGETS", "request", "servers", "setup"]


def servers(env: BenchEnv) -> list[ServerSpec]:
    return [env.stagedoor("waitingroom", processes=2)]


async def setup(env: BenchEnv) -> dict[str, Any]:
    return {"url": env.url("waitingroom") + "/healthz"}
