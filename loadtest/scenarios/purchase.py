"""Hold + purchase end to end over HTTP: one timed request = POST a one-seat hold, then POST
its purchase (``tok_ok``, zero gateway latency), on a 60,000-seat event, ticketing at 2
processes. The figure is purchases/s (each needs both calls to succeed) and its latency.

Compared in the same run with the pgbench purchase transaction (``pgbench_purchase_cte``,
``pgbench_purchase_4stmt``) and a bare aiohttp + asyncpg purchase handler
(``asyncpg_purchase_cte_2p``): our purchase does that SQL plus the Redis hold, the
lock-for-payment and confirm-sold scripts, the Idempotency-Key claim, two token checks and
two Ed25519 signatures (ticket code). Oversold seats are counted afterwards in PostgreSQL.

Users are inserted straight into PostgreSQL and given access tokens from the run's key ring
(registration would measure argon2, not purchases); rate limits are off (one client IP), and
the per-account ticket limit is raised so each task buys with one account.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

from loadtest.driver import WorkerState
from loadtest.scenario import BenchEnv, Figure, LoadConfig, ServerSpec, Target
from loadtest.scenarios._accounts import bench_accounts

READY = True
DESCRIPTION = "POST hold (1 seat) + POST purchase (tok_ok, zero gateway latency), ticketing at 2 processes"
SEATS = 60_000
LOAD = LoadConfig(processes=2, concurrency=24, duration_s=10.0, warmup_s=2.0, max_requests=SEATS - 1_000)
TARGETS = (
    Target("req_per_s", min_value=1_000.0, label="purchases/s (hold + purchase)"),
    Target("p99_ms", max_value=500.0, label="purchase (hold + purchase) p99"),
    Target("req_per_s", limit="pgbench_purchase_cte", min_ratio=0.05, label="purchases/s vs pgbench CTE purchase"),
    Target("req_per_s", limit="asyncpg_purchase_cte_2p", min_ratio=0.1,
           label="purchases/s vs bare asyncpg CTE purchase handler (2 procs)"),
    Target("oversold_seats", max_value=0, label="seats sold twice"),
)
EXPECTED_STATUSES = frozenset({201})


def servers(env: BenchEnv) -> list[ServerSpec]:
    return [env.stagedoor("ticketing", processes=2, STAGEDOOR_RATE_LIMITS_ENABLED="false",
                          STAGEDOOR_MAX_TICKETS_PER_ACCOUNT_PER_EVENT="10000",
                          STAGEDOOR_PAYMENT_MOCK_LATENCY_MS="0")]


def _seat_map(seats: int) -> dict[str, Any]:
    """``seats`` seats in rows of 1,000 (the last one shorter), 20 rows to a section."""
    per_row, rows_per_section = 1_000, 20
    rows = [{"label": f"R{r % rows_per_section + 1}",
             "seats": [{"number": str(n), "tier": "A"} for n in range(1, min(per_row, seats - r * per_row) + 1)]}
            for r in range(-(-seats // per_row))]
    return {"sections": [{"name": f"S{s + 1}", "rows": rows[s * rows_per_section:(s + 1) * rows_per_section]}
                         for s in range(-(-len(rows) // rows_per_section))]}


async def setup(env: BenchEnv) -> dict[str, Any]:
    return await create_shop(env, LOAD.processes * LOAD.concurrency, "bench")


async def create_shop(env: BenchEnv, fans: int, label: str, seats: int = SEATS) -> dict[str, Any]:
    """An event on sale with ``seats`` seats and an access token for each of ``fans`` customers: the
    ctx of the hold + purchase scenarios (``base``, ``event_id``, ``tokens``)."""
    org_token, tokens = await bench_accounts(env, fans, label)
    body = {
        "title": "Bench arena", "category": "concert", "currency": "EUR",
        "venue": {"name": "Bench Arena", "city": "Benchville", "address": "1 Loop St"},
        "starts_at": "2030-06-01T19:00:00Z", "ends_at": "2030-06-01T22:00:00Z",
        "tiers": [{"code": "A", "name": "Hall", "price": 4500}], "seat_map": _seat_map(seats),
        "max_tickets_per_order": 4,
    }
    base = env.url("ticketing")
    async with aiohttp.ClientSession() as session, session.post(
            base + "/api/events", json=body, headers={"Authorization": f"Bearer {org_token}"},
            timeout=aiohttp.ClientTimeout(total=120)) as resp:
        if resp.status != 201:
            raise RuntimeError(f"event create failed: {resp.status} {await resp.text()}")
        event_id = (await resp.json())["id"]
    return {"base": base, "event_id": event_id, "tokens": tokens}


async def worker_setup(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> None:
    state.data["auth"] = {"Authorization": "Bearer " + ctx["tokens"][state.global_index]}
    state.data["hold_url"] = f"{ctx['base']}/api/events/{ctx['event_id']}/holds"


PAYMENT = {"payment": {"method": "card", "token": "tok_ok"}, "email": "fan@example.test"}


async def hold_and_buy(state: WorkerState, ticketing: str) -> int:
    """One measured purchase: hold the task's next seat, pay for it with ``state.data["payment"]``
    (default: ``tok_ok``); also used by the replicas and the gateway scenarios."""
    auth = state.data["auth"]
    seat = f"s{state.next_id() + 1}"
    held = await state.http.post(state.data["hold_url"], json_body={"seats": [seat]}, headers=auth)
    if held.status != 201:
        return held.status
    hold_id = held.json()["hold_id"]
    bought = await state.http.post(f"{ticketing}/api/holds/{hold_id}/purchase",
                                   json_body=state.data.get("payment", PAYMENT),
                                   headers={**auth, "Idempotency-Key": hold_id})
    return bought.status


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    return await hold_and_buy(state, ctx["base"])


async def figures(env: BenchEnv, ctx: dict[str, Any], result: Any) -> list[Figure]:
    conn = await asyncpg.connect(env.database_url)
    try:
        oversold = await conn.fetchval(
            "SELECT count(*) FROM (SELECT seat_id FROM tickets WHERE event_id = $1 AND seat_id IS NOT NULL "
            "GROUP BY seat_id HAVING count(*) > 1) d", int(ctx["event_id"]))
        orders = await conn.fetchval("SELECT count(*) FROM orders WHERE event_id = $1", int(ctx["event_id"]))
    finally:
        await conn.close()
    return [Figure("oversold_seats", float(oversold), "seats"), Figure("orders_committed", float(orders), "orders")]
