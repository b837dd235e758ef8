"""Charged once, checked after a purchase run (not a scenario itself): what PostgreSQL holds for
the run's event, and what the gateway says it charged.

In PostgreSQL (``order_figures``): every order has exactly one payments row, no payments row
lacks its order (a charge owed back or given back), no charge attempt is left ``pending`` or
``unknown`` (a charge that may have been taken for no order), no seat is sold twice.

At the gateway:

- the mock (``mock_charges``) lives inside each ticketing process, so its charges are counted
  from each process's ``/metrics``: ``ticketing_payment_attempts_total{outcome="ok"}``, the
  charges the gateway answered with success. The processes share one port (SO_REUSEPORT), so
  ``/metrics`` is read on fresh connections until every process has answered; a process is
  told apart by its own counters (their values differ between processes, and stand still once
  the load is over). A charge answered twice for one key (a retry) would count twice here.
- Stripe (``stripe_charges``): the PaymentIntents the server holds, those that succeeded, and
  the gateway keys (``metadata['gateway_key']``) with more than one succeeded.

``double_charges`` = charges at the gateway - orders committed: each order needs one charge,
so any charge beyond that is one a fan paid twice (or paid for nothing).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

from loadtest.scenario import Figure

_ORDER_CHECKS = """
SELECT
  (SELECT count(*) FROM orders WHERE event_id = $1) AS orders_committed,
  (SELECT count(*) FROM orders o WHERE o.event_id = $1
     AND (SELECT count(*) FROM payments p WHERE p.order_id = o.id) <> 1) AS orders_without_one_payment,
  (SELECT count(*) FROM payments WHERE event_id = $1 AND order_id IS NULL) AS payments_without_order,
  (SELECT count(*) FROM charge_attempts WHERE event_id = $1 AND state IN ('pending', 'unknown'))
     AS charge_attempts_unsettled,
  (SELECT count(*) FROM (SELECT seat_id FROM tickets WHERE event_id = $1 AND seat_id IS NOT NULL
                         GROUP BY seat_id HAVING count(*) > 1) d) AS oversold_seats
"""
ORDER_FIGURES = ("orders_committed", "orders_without_one_payment", "payments_without_order",
                 "charge_attempts_unsettled", "oversold_seats")
_UNITS = {"oversold_seats": "seats", "orders_committed": "orders", "orders_without_one_payment": "orders",
          "payments_without_order": "payments", "charge_attempts_unsettled": "attempts"}

_OK_ATTEMPTS = 'ticketing_payment_attempts_total{outcome="ok"}'
# the counters that tell one process from another (none of them moves with /metrics reads)
_IDENTITY = (_OK_ATTEMPTS, "ticketing_orders_confirmed_total", 'ticketing_payment_latency_seconds_sum{outcome="ok"}')
METRICS_READS = 64  # fresh connections to /metrics before giving up on seeing every process


async def order_figures(database_url: str, event_id: int) -> list[Figure]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(_ORDER_CHECKS, event_id)
    finally:
        await conn.close()
    assert row is not None
    return [Figure(name, float(row[name]), _UNITS[name]) for name in ORDER_FIGURES]


def _samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def mock_charges(ticketing: str, processes: int) -> tuple[float, int]:
    """(charges the mock gateways of the ``processes`` ticketing processes made, processes read)."""
    seen: dict[tuple[float, ...], float] = {}
    for _ in range(METRICS_READS):
        # a new connection each time: the kernel spreads them over the processes sharing the port
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session, \
                session.get(ticketing + "/metrics") as resp:
            samples = _samples(await resp.text())
        seen[tuple(samples.get(name, 0.0) for name in _IDENTITY)] = samples.get(_OK_ATTEMPTS, 0.0)
        if len(seen) >= processes:
            break
    return sum(seen.values()), len(seen)


async def stripe_charges(stripe: str, api_key: str) -> tuple[int, int, int]:
    """(PaymentIntents on the server, those succeeded, gateway keys with more than one succeeded),
    listing every intent (a local server: it holds this run's only)."""
    per_key: dict[str, int] = {}
    intents = succeeded = 0
    after: str | None = None
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            params = {"limit": "100", **({"starting_after": after} if after else {})}
            async with session.get(stripe + "/v1/payment_intents", params=params) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"listing payment intents: {resp.status} {await resp.text()}")
                page: dict[str, Any] = await resp.json()
            for intent in page["data"]:
                intents += 1
                if intent.get("status") == "succeeded":
                    succeeded += 1
                    key = (intent.get("metadata") or {}).get("gateway_key", "")
                    per_key[key] = per_key.get(key, 0) + 1
            if not page.get("has_more") or not page["data"]:
                break
            after = page["data"][-1]["id"]
    return intents, succeeded, sum(1 for n in per_key.values() if n > 1)
