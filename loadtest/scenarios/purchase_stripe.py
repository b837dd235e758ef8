"""Hold + purchase as in ``purchase``, charged through the Stripe adapter
(``STAGEDOOR_PAYMENT_GATEWAY=stripe``, ticketing/payments/stripe_gateway.py) against a local
Stripe-compatible server started for the scenario: localstripe (stagedoor/dev_stripe.py), on the
loopback port the bench gives ``env.url("stripe")``. Ticketing at 2 processes.

Each purchase is one PaymentIntent created and confirmed in one call with a test card's
PaymentMethod (4242 4242 4242 4242, one made per load task in setup and reused by its task's
purchases: localstripe, unlike Stripe, charges an unattached PaymentMethod again). localstripe
is a single Python process that keeps every object in memory, so it, not stagedoor, sets this
figure: its own CPU is reported beside ticketing's, PostgreSQL's, Redis's and the load
generator's (``cpu_cores_*``, loadtest/scenarios/_cpu.py). The figure says what our adapter
does against that server, not what Stripe would take.

localstripe's CPU per PaymentIntent grows with the intents it holds (every export of a charge
lists its refunds by scanning the whole store, about a dozen times per intent): about 2.5 ms on
an empty server, 10 ms after 1,500 intents on this kind of machine. So the run is bounded by a
purchase count, ``PURCHASES`` (warm-up included), rather than by time alone: every run measures
the same stretch of the server's life (its first 1,500 intents), whatever the host's speed.

Charged once, counted at the server: one succeeded PaymentIntent per committed order, no gateway
key (``metadata['gateway_key']``) with two, no PaymentIntent that did not succeed, and
PostgreSQL's side as in purchase_gateway_latency (loadtest/scenarios/_charges.py).
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from loadtest.driver import RunResult, WorkerState
from loadtest.scenario import BenchEnv, Figure, LoadConfig, ServerSpec, Target
from loadtest.scenarios import purchase
from loadtest.scenarios._charges import order_figures, stripe_charges
from loadtest.scenarios._cpu import SHOP, cpu_figures, drive_measuring_cpu
from stagedoor.dev_stripe import local_keys

READY = True
DESCRIPTION = ("POST hold (1 seat) + POST purchase through the Stripe adapter against localstripe "
               "(a PaymentIntent per purchase), ticketing at 2 processes")
PURCHASES = 1_500
SEATS = 2_000
LOAD = LoadConfig(processes=2, concurrency=32, duration_s=15.0, warmup_s=2.0, max_requests=PURCHASES)
TARGETS = (
    Target("req_per_s", min_value=50.0, label="purchases/s through Stripe (localstripe, one process)"),
    Target("p99_ms", max_value=1_000.0, label="purchase (hold + purchase) p99 through Stripe (localstripe)"),
    Target("oversold_seats", max_value=0, label="seats sold twice"),
    Target("double_charges", max_value=0, label="succeeded PaymentIntents beyond one per order"),
    Target("gateway_keys_charged_twice", max_value=0, label="gateway keys with two succeeded PaymentIntents"),
    Target("payment_intents_not_succeeded", max_value=0, label="PaymentIntents that did not succeed"),
    Target("orders_without_one_payment", max_value=0, label="orders without exactly one payments row"),
    Target("payments_without_order", max_value=0, label="payments rows without their order"),
    Target("charge_attempts_unsettled", max_value=0, label="charge attempts left pending or unknown"),
)
EXPECTED_STATUSES = frozenset({201})
CARD = "4242424242424242"
CPU_GROUPS = (*SHOP, ("localstripe", "stagedoor.dev_stripe"))


def servers(env: BenchEnv) -> list[ServerSpec]:
    stripe = env.url("stripe")
    localstripe = ServerSpec(name="localstripe",
                             argv=(sys.executable, "-m", "stagedoor.dev_stripe", "--port", str(urlsplit(stripe).port)),
                             env={}, url=stripe, ready_path="/js.stripe.com/v3/")  # its one route without a key
    return [localstripe, env.stagedoor(
        "ticketing", processes=2, STAGEDOOR_RATE_LIMITS_ENABLED="false",
        STAGEDOOR_MAX_TICKETS_PER_ACCOUNT_PER_EVENT="10000", STAGEDOOR_PAYMENT_GATEWAY="stripe",
        STAGEDOOR_STRIPE_API_KEY=local_keys()[0], STAGEDOOR_STRIPE_API_BASE=stripe)]


async def payment_methods(stripe: str, api_key: str, count: int) -> list[str]:
    """``count`` PaymentMethods of the test card on the server."""
    made = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as session:
        for _ in range(count):
            async with session.post(stripe + "/v1/payment_methods", json={
                    "type": "card", "card": {"number": CARD, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"payment method refused: {resp.status} {await resp.text()}")
                made.append(str((await resp.json())["id"]))
    return made


async def setup(env: BenchEnv) -> dict[str, Any]:
    tasks = LOAD.processes * LOAD.concurrency
    ctx = await purchase.create_shop(env, tasks, "bench-stripe", seats=SEATS)
    api_key = local_keys()[0]  # the local server takes any secret key
    return {**ctx, "stripe": env.url("stripe"), "stripe_api_key": api_key,
            "payment_methods": await payment_methods(env.url("stripe"), api_key, tasks)}


async def worker_setup(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> None:
    await purchase.worker_setup(session, ctx, state)
    state.data["payment"] = {"payment": {"method": "card", "token": ctx["payment_methods"][state.global_index]},
                             "email": "fan@example.test"}


async def request(session: aiohttp.ClientSession, ctx: dict[str, Any], state: WorkerState) -> int:
    return await purchase.hold_and_buy(state, ctx["base"])


def drive(env: BenchEnv, ctx: dict[str, Any], config: LoadConfig) -> RunResult:
    return drive_measuring_cpu("purchase_stripe", env, ctx, config, CPU_GROUPS)


async def figures(env: BenchEnv, ctx: dict[str, Any], result: RunResult) -> list[Figure]:
    found = await order_figures(env.database_url, int(ctx["event_id"]))
    orders = next(f.value for f in found if f.name == "orders_committed")
    intents, succeeded, twice = await stripe_charges(ctx["stripe"], ctx["stripe_api_key"])
    return [*found, Figure("gateway_charges", float(succeeded), "payment intents"),
            Figure("double_charges", succeeded - orders, "payment intents"),
            Figure("gateway_keys_charged_twice", float(twice), "keys"),
            Figure("payment_intents_not_succeeded", float(intents - succeeded), "payment intents"),
            *cpu_figures(ctx, result)]
