"""Raw-limit helper (not a scenario of ours): GET a path of loadtest.hello_server.

Used by loadtest/limits.py for the hello-world and one-EVALSHA handler limits; the path comes
from ``env.extra["hello_path"]``, the client from ``ctx["client"]`` ("raw": loadtest.rawhttp, the
default; "aiohttp": the aiohttp session).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from loadtest.driver import WorkerState
from loadtest.scenario import BenchEnv, LoadConfig

LOAD = LoadConfig(processes=2, concurrency=32, duration_s=8.0, warmup_s=2.0)


async def setup(env: BenchEnv) -> dict[str, Any]:
    return {"url": env.url("hello") + env.extra.get("hello_path", "/hello"),
            "client": env.extra.get("client", "raw"), "method": env.extra.get("method", "GET")}


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    if ctx.get("client") == "aiohttp":
        async with session.get(ctx["url"]) as resp:
            await resp.read()
            return resp.status
    if ctx.get("method") == "POST":
        return (await state.http.post(ctx["url"])).status
    return (await state.http.get(ctx["url"])).status
