"""Throughput with 1 and with 2 processes per service, side by side: join and status on the
waiting room, hold + purchase on ticketing. The bench starts nothing for this scenario; ``drive``
starts the waiting room and ticketing with 1 process each, measures the three loads, stops them,
then does the same with 2 processes each (``stagedoor serve <service> --processes N``: N processes
sharing the port, one Redis and one PostgreSQL behind them).

Loads as in waitingroom_join / waitingroom_status / purchase (lean client, rate limits off, a
paused fifo room so joins queue, one seat per purchase on a 10,000-seat event), shorter (4 s each).
On 2 cores the load generator competes with the servers, so 2 processes are not expected to be
twice as fast; the figures show what a second process buys on this machine.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from loadtest.driver import RunResult, WorkerState, run_load
from loadtest.scenario import BenchEnv, Figure, LoadConfig, ServerSpec, Target
from loadtest.scenarios._accounts import bench_accounts
from loadtest.scenarios._waitingroom import bench_room, create_room
from loadtest.scenarios.purchase import hold_and_buy

READY = True
DESCRIPTION = "join, status, hold + purchase throughput with 1 and with 2 processes per service"
ROOM = "bench-replicas"
SEATS = 10_000
LOAD = LoadConfig(processes=2, concurrency=32, duration_s=4.0, warmup_s=1.0, max_requests=2_000_000)
PURCHASE_LOAD = replace(LOAD, concurrency=24)
KINDS = ("join", "status", "purchase")
EXPECTED_STATUSES = frozenset({200, 201})
TARGETS = (
    *(Target(f"{kind}_req_per_s_2p_vs_1p", min_value=1.0, label=f"{kind}/s with 2 processes / with 1")
      for kind in KINDS),
    Target("oversold_seats", max_value=0, label="seats sold twice (both runs)"),
)
SERVICE_ENV = {"STAGEDOOR_RATE_LIMITS_ENABLED": "false", "STAGEDOOR_MAX_TICKETS_PER_ACCOUNT_PER_EVENT": "10000",
               "STAGEDOOR_PAYMENT_MOCK_LATENCY_MS": "0"}
_FIGURES: dict[str, float] = {}


def servers(env: BenchEnv) -> list[ServerSpec]:
    return []  # drive() starts them, once per process count


def service_specs(env: BenchEnv, processes: int) -> list[ServerSpec]:
    return [env.stagedoor("waitingroom", processes=processes, **SERVICE_ENV),
            env.stagedoor("ticketing", processes=processes, **SERVICE_ENV)]


async def setup(env: BenchEnv) -> dict[str, Any]:
    await create_room(env.redis_url, bench_room(ROOM))
    tasks = PURCHASE_LOAD.processes * PURCHASE_LOAD.concurrency
    org_token, tokens = await bench_accounts(env, tasks, "replicas")
    base = env.url("waitingroom")
    return {"join": f"{base}/api/rooms/{ROOM}/join", "status": f"{base}/api/rooms/{ROOM}/status",
            "ticketing": env.url("ticketing"), "tokens": tokens, "kind": "join", "event_id": "",
            "organizer_token": org_token}


async def _create_event(ctx: dict[str, Any], label: str) -> str:
    per_row, rows = 500, 20
    body = {
        "title": f"Replicas {label}", "category": "concert", "currency": "EUR",
        "venue": {"name": "Bench Arena", "city": "Benchville", "address": "1 Loop St"},
        "starts_at": "2030-06-01T19:00:00Z", "ends_at": "2030-06-01T22:00:00Z",
        "tiers": [{"code": "A", "name": "Hall", "price": 4500}], "max_tickets_per_order": 4,
        "seat_map": {"sections": [{"name": "S", "rows": [
            {"label": f"R{r}", "seats": [{"number": str(n), "tier": "A"} for n in range(1, per_row + 1)]}
            for r in range(1, rows + 1)]}]},
    }
    async with aiohttp.ClientSession() as session, session.post(
            ctx["ticketing"] + "/api/events", json=body, timeout=aiohttp.ClientTimeout(total=120),
            headers={"Authorization": "Bearer " + ctx["organizer_token"]}) as resp:
        if resp.status != 201:
            raise RuntimeError(f"event create failed: {resp.status} {await resp.text()}")
        return str((await resp.json())["id"])


async def worker_setup(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> None:
    if ctx["kind"] == "status":
        joined = await state.http.post(ctx["join"], json_body={})
        state.data["auth"] = {"Authorization": "Bearer " + joined.json()["queue_token"]}
    elif ctx["kind"] == "purchase":
        state.data["auth"] = {"Authorization": "Bearer " + ctx["tokens"][state.global_index]}
        state.data["hold_url"] = f"{ctx['ticketing']}/api/events/{ctx['event_id']}/holds"


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    kind = ctx["kind"]
    if kind == "join":
        return (await state.http.post(ctx["join"], json_body={})).status
    if kind == "status":
        return (await state.http.get(ctx["status"], headers=state.data["auth"])).status
    return await hold_and_buy(state, ctx["ticketing"])


async def _oversold(database_url: str, event_ids: list[str]) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM (SELECT event_id, seat_id FROM tickets WHERE event_id = ANY($1::bigint[]) "
            "AND seat_id IS NOT NULL GROUP BY event_id, seat_id HAVING count(*) > 1) d", [int(e) for e in event_ids]))
    finally:
        await conn.close()


def drive(env: BenchEnv, ctx: dict[str, Any], config: LoadConfig) -> RunResult:
    from loadtest.bench import ROOT, log, start_server, stop_server, wait_ready

    name = __name__.rsplit(".", 1)[-1]
    workdir = Path(env.data_dir or ROOT).parent
    events: list[str] = []
    last: RunResult | None = None
    for processes in (1, 2):
        started = []
        try:
            for spec in service_specs(env, processes):
                started.append(start_server(spec, workdir))
            for s in started:
                wait_ready(s)
            event_id = asyncio.run(_create_event(ctx, f"{processes}p"))
            events.append(event_id)
            for kind in KINDS:
                load = replace(PURCHASE_LOAD, max_requests=SEATS - 500) if kind == "purchase" else config
                result = run_load(name, {**ctx, "kind": kind, "event_id": event_id}, env, load)
                s = result.summary()
                log(f"    {kind} with {processes} process(es): {s['req_per_s']:.0f}/s, p99 {s['p99_ms']:.1f} ms, "
                    f"errors {s['errors']} {s['errors_by_status'] or ''}")
                _FIGURES[f"{kind}_req_per_s_{processes}p"] = s["req_per_s"]
                _FIGURES[f"{kind}_p99_ms_{processes}p"] = s["p99_ms"]
                _FIGURES[f"{kind}_errors_{processes}p"] = float(s["errors"])
                last = result
        finally:
            for s in reversed(started):
                stop_server(s)
    for kind in KINDS:
        one = _FIGURES.get(f"{kind}_req_per_s_1p", 0.0)
        _FIGURES[f"{kind}_req_per_s_2p_vs_1p"] = round(_FIGURES.get(f"{kind}_req_per_s_2p", 0.0) / one, 2) if one else 0
    _FIGURES["oversold_seats"] = float(asyncio.run(_oversold(env.database_url, events)))
    assert last is not None
    return last


async def figures(env: BenchEnv, ctx: dict[str, Any], result: RunResult) -> list[Figure]:
    def unit(k: str) -> str:
        if "_vs_" in k or "errors" in k:
            return ""
        return "/s" if "req_per_s" in k else ("ms" if "_ms_" in k else "seats")

    return [Figure(k, v, unit(k)) for k, v in _FIGURES.items()]
