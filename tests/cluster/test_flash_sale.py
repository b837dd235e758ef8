"""A small flash sale with every service as real processes on the Redis Cluster (waiting room,
admission controller, ticketing, hold sweeper: ``STAGEDOOR_REDIS_CLUSTER=true``): nothing
oversold, FIFO kept, the configured rate, sold out, no 5xx."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from loadtest.flashsale import SalePlan, run_sale
from loadtest.scenarios.flash_sale import create_sale, sale_figures
from tests.support.stack import running_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_small_flash_sale_on_the_cluster_sells_out_cleanly(redis_cluster_url: str, database_url: str,
                                                             redis_prefix: str, tmp_path: Path) -> None:
    plan = SalePlan(fans=300, seats=60, rate_per_s=20.0, max_active=1000, pre_start_s=2.0, post_join_s=3.0,
                    sale_max_s=40.0, processes=1, queue_connections=16, shop_connections=8, poll_min_s=0.5,
                    poll_max_s=2.0, hold_ttl_s=5, seats_per_row=10)
    with running_stack(("admission", "waitingroom", "ticketing", "worker"), redis_url=redis_cluster_url,
                       database_url=database_url, prefix=redis_prefix, workdir=tmp_path,
                       STAGEDOOR_REDIS_CLUSTER="true", STAGEDOOR_HOLD_SWEEP_INTERVAL_S="1",
                       STAGEDOOR_PAYMENT_WINDOW_S="8") as env:
        ctx = replace(asyncio.run(create_sale(env, plan, "cluster-sale")), redis_prefix=redis_prefix,
                      redis_cluster=True)
        sale = run_sale(ctx, env.url("admission"), env.admin_headers())
        figures = {f.name: f.value for f in asyncio.run(sale_figures(env, ctx, sale))}
    assert not sale.failures, sale.failures
    assert figures["server_errors"] == 0, figures
    assert figures["oversold_seats"] == 0 and figures["sold_over_capacity"] == 0, figures
    assert figures["admissions_checked"] > 20 and figures["out_of_order_admissions"] == 0, figures
    assert figures["admitted_early"] == 0, figures
    assert figures["seats_sold"] == 60 and figures["sold_out"] == 1, figures
