"""Hold + purchase as in ``purchase``, with a payment gateway that takes 300 ms to answer every
charge (the mock's ``STAGEDOOR_PAYMENT_MOCK_LATENCY_MS``), ticketing at 2 processes: purchases/s
when the event loop must keep hundreds of charges in flight.

By Little's law 1,000 purchases/s with 300 ms charges means at least 300 purchases in flight, so
the load keeps 2 x 200 = 400 (``CHARGED_CONCURRENCY``) open: enough for about 1,300/s if a
purchase took the charge's 300 ms alone. More would only queue: in a closed loop whose rate is
set by the CPU, every extra purchase in flight adds its share of waiting to each one's latency.

The purchase holds no PostgreSQL connection while it waits for the gateway
(ticketing/orders/purchase.py: the charge attempt is written with one pooled statement before
the charge, the order with another after it), so the stock pool (20 per process, 40 of the
embedded server's 100 connections) serves it: sampled during a run, about 5 of the 40
connections are busy at any moment, the others idle.

Compared in the same run with ``asyncpg_purchase_cte_300ms_2p`` (loadtest/limits.py): a bare
aiohttp + asyncpg handler that waits the same 300 ms, then does the purchase as one CTE, driven
with the same 2 x 200. Charged once: every order has exactly one payments row, none lacks its
order, no attempt is left unsettled, and the charges the mock gateways made (each process's
``/metrics``) equal the orders (loadtest/scenarios/_charges.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from loadtest.driver import RunResult, WorkerState
from loadtest.limits import CHARGED_CONCURRENCY, CHARGED_LIMIT, GATEWAY_LATENCY_MS
from loadtest.scenario import BenchEnv, Figure, LoadConfig, ServerSpec, Target
from loadtest.scenarios import purchase
from loadtest.scenarios._charges import mock_charges, order_figures
from loadtest.scenarios._cpu import cpu_figures, drive_measuring_cpu

READY = True
DESCRIPTION = (f"POST hold (1 seat) + POST purchase (tok_ok, {GATEWAY_LATENCY_MS} ms gateway latency), "
               f"2 x {CHARGED_CONCURRENCY} in flight, ticketing at 2 processes")
PROCESSES = 2  # ticketing's
SEATS = 30_000
LOAD = LoadConfig(processes=2, concurrency=CHARGED_CONCURRENCY, duration_s=10.0, warmup_s=3.0,
                  max_requests=SEATS - 1_000)
TARGETS = (
    Target("req_per_s", min_value=1_000.0, label=f"purchases/s with {GATEWAY_LATENCY_MS} ms charges"),
    Target("p99_ms", max_value=1_000.0, label=f"purchase (hold + purchase) p99 with {GATEWAY_LATENCY_MS} ms charges"),
    Target("req_per_s", limit=CHARGED_LIMIT, min_ratio=0.3,
           label=f"purchases/s vs bare asyncpg CTE handler after {GATEWAY_LATENCY_MS} ms (2 procs)"),
    Target("oversold_seats", max_value=0, label="seats sold twice"),
    Target("double_charges", max_value=0, label="charges beyond one per order (mock gateways' own count)"),
    Target("orders_without_one_payment", max_value=0, label="orders without exactly one payments row"),
    Target("payments_without_order", max_value=0, label="payments rows without their order"),
    Target("charge_attempts_unsettled", max_value=0, label="charge attempts left pending or unknown"),
    Target("metrics_processes_read", min_value=PROCESSES, label="ticketing processes whose charges were counted"),
)
EXPECTED_STATUSES = frozenset({201})


def servers(env: BenchEnv) -> list[ServerSpec]:
    return [env.stagedoor("ticketing", processes=PROCESSES, STAGEDOOR_RATE_LIMITS_ENABLED="false",
                          STAGEDOOR_MAX_TICKETS_PER_ACCOUNT_PER_EVENT="10000",
                          STAGEDOOR_PAYMENT_MOCK_LATENCY_MS=str(GATEWAY_LATENCY_MS))]


async def setup(env: BenchEnv) -> dict[str, Any]:
    return await purchase.create_shop(env, LOAD.processes * LOAD.concurrency, "bench-gw", seats=SEATS)


async def worker_setup(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> None:
    await purchase.worker_setup(session, ctx, state)


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    return await purchase.hold_and_buy(state, ctx["base"])


def drive(env: BenchEnv, ctx: dict[str, Any], config: LoadConfig) -> RunResult:
    return drive_measuring_cpu("purchase_gateway_latency", env, ctx, config)


async def figures(env: BenchEnv, ctx: dict[str, Any], result: RunResult) -> list[Figure]:
    await asyncio.sleep(GATEWAY_LATENCY_MS / 1000 + 0.5)  # a purchase whose client gave up may still commit
    found = await order_figures(env.database_url, int(ctx["event_id"]))
    orders = next(f.value for f in found if f.name == "orders_committed")
    charges, processes = await mock_charges(ctx["base"], PROCESSES)
    return [*found, Figure("gateway_charges", charges, "charges"),
            Figure("double_charges", charges - orders, "charges"),
            Figure("metrics_processes_read", float(processes), "processes"), *cpu_figures(ctx, result)]
