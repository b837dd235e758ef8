"""POST /api/rooms/{room}/join by new visitors (no token): one new queue place per request,
waiting room at 2 server processes, rate limits off (one client IP). The room is selling but
paused, so every join queues (the full join path: script, HMAC queue token, cookie).

Compared in the same run with the hello-world handler (``hello_2p``) and with
redis-benchmark EVALSHA of lua/join_queue.lua itself.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from loadtest.driver import WorkerState
from loadtest.limits import RedisScriptBench
from loadtest.scenario import BenchEnv, LoadConfig, ServerSpec, Target
from loadtest.scenarios._waitingroom import bench_room, create_room

READY = True
DESCRIPTION = "POST join (new visitor) on the waiting room, 2 server processes"
ROOM = "bench-join"
LOAD = LoadConfig(processes=2, concurrency=32, duration_s=10.0, warmup_s=2.0, max_requests=2_000_000)
TARGETS = (
    Target("req_per_s", limit="hello_2p", min_ratio=0.5, label="joins/s vs hello world (2 procs)"),
    # no target of its own: how close to a bare handler making the same one pipelined Redis call
    Target("req_per_s", limit="evalsha_pipelined_2p", label="joins/s vs bare handler + one pipelined EVALSHA"),
    Target("p99_ms", max_value=50.0, label="join p99"),
    Target("req_per_s", limit="redis_join_queue_p1", min_ratio=0.05, label="joins/s vs redis-benchmark join_queue"),
)
# hello_2p is measured again in rounds alternating with this load (loadtest.bench.run_interleaved):
# the ratio to hello world is this scenario's headline figure, and the host drifts over minutes
INTERLEAVED = "hello_2p"
EXPECTED_STATUSES = frozenset({201})

_R = "sd:{room:rb}"


async def _prepare_join_bench(redis: Any) -> None:
    await redis.hset(f"{_R}:cfg", mapping={
        "mode": "fifo", "opens_at": 0, "starts_at": 0, "closes_at": 0, "rate": "1.0", "max_active": 10,
        "ttl_ms": 600_000, "abandon_ms": 60_000, "paused": "1", "pow": 0, "event_id": "", "shop_url": ""})


REDIS_LIMITS = (RedisScriptBench(
    name="join_queue", script="join_queue", keyspace=1_000_000, prepare=_prepare_join_bench,
    label="Redis EVALSHA lua/join_queue.lua (new visitor, paused room)",
    keys=tuple(f"{_R}:{k}" for k in ("cfg", "st", "wait", "active", "evicted", "seen:1")),
    args=("", "", "1700000000000", "0.5", "5000", "0.5", "b__rand_int__", "10000"),
),)


def servers(env: BenchEnv) -> list[ServerSpec]:
    return [env.stagedoor("waitingroom", processes=2, STAGEDOOR_RATE_LIMITS_ENABLED="false")]


async def setup(env: BenchEnv) -> dict[str, Any]:
    await create_room(env.redis_url, bench_room(ROOM))
    return {"url": f"{env.url('waitingroom')}/api/rooms/{ROOM}/join"}


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    response = await state.http.post(ctx["url"], json_body={})
    return response.status
