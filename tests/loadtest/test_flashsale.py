"""The flash-sale engine (loadtest/flashsale.py): its FIFO and rate arithmetic on hand-made
snapshots, the seat picker, and a small real sale against a started stack whose figures must
come out clean (nothing oversold, no out-of-order admission, the configured rate)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from loadtest.flashsale import (
    SalePlan,
    SaleResult,
    Snapshot,
    admitted_rate,
    out_of_order,
    pick_seats,
    run_sale,
    visitor_seq,
)
from loadtest.scenarios.flash_sale import create_sale, push_figures, sale_figures
from tests.support.stack import running_stack


def test_visitor_ids_carry_their_arrival_number_in_base_36() -> None:
    assert visitor_seq("1_abcd") == 1
    assert visitor_seq("zz_Q1w2") == 36 * 35 + 35


def test_an_admission_while_an_earlier_arrival_or_a_pre_queue_visitor_waits_is_out_of_order() -> None:
    snaps = [
        Snapshot(1.0, 0.42, ["5_a"], 1, 10, False),         # a pre-queue visitor (score < 1) still waits
        Snapshot(2.0, 7.0, ["6_b", "7_c"], 3, 8, False),     # head is arrival 7: 6 is fine, 7 itself fine
        Snapshot(3.0, 8.0, ["9_d"], 4, 6, False),            # arrival 8 waits while 9 was let in
        Snapshot(4.0, None, ["a_e"], 5, 0, False),           # nobody waits: nothing to compare
        Snapshot(5.0, 0.9, ["2_f"], 6, 3, False),            # "2_f" joined before starts_at: not checked
    ]
    post_start = {"5_a", "6_b", "7_c", "9_d", "a_e"}
    assert out_of_order(snaps, post_start) == ["5_a", "9_d"]


def test_the_admitted_rate_skips_the_initial_burst_and_stops_at_the_sell_out() -> None:
    starts_at = 100.0
    snaps = [Snapshot(starts_at + t / 10, 5.0, [], int(50 * t / 10) + (40 if t >= 5 else 0), 1000, t >= 100)
             for t in range(0, 120)]
    rate, span = admitted_rate(snaps, starts_at, skip_s=2.0)
    assert rate == pytest.approx(50.0, rel=0.01)
    assert span == pytest.approx(7.9, abs=0.11)


def test_the_admitted_rate_stops_where_the_stock_first_held_admission_back() -> None:
    """After that the last tickets are let in as they come back, not at the rate."""
    starts_at = 100.0
    snaps = [Snapshot(starts_at + t / 10, 5.0, [], min(50 * t // 10, 250 + t // 10), 1000, False, t >= 50)
             for t in range(0, 120)]
    rate, span = admitted_rate(snaps, starts_at, skip_s=2.0)
    assert rate == pytest.approx(50.0, rel=0.01)
    assert span == pytest.approx(2.9, abs=0.11)


def test_a_fixed_sample_of_fans_waits_on_the_event_stream() -> None:
    plan = SalePlan(fans=20_000, sse_fans=300)
    chosen = [i for i in range(plan.fans) if plan.streams(i)]
    assert len(chosen) == 300 and chosen[:3] == [0, 66, 132]
    assert [i for i in range(10) if SalePlan(fans=10, sse_fans=40).streams(i)] == list(range(10))
    assert not any(SalePlan(fans=10, sse_fans=0).streams(i) for i in range(10))


def test_the_sold_out_push_is_timed_from_the_last_purchase_and_counts_the_streams_never_told() -> None:
    sale = SaleResult(plan=SalePlan(), starts_at=0.0, ended_at=0.0, hist={}, statuses={}, exceptions={},
                      pool_wait={}, outcomes=Counter(), joins=[], admitted_by_fans={}, admitted_early=0,
                      monitor=None, failures=[], last_sale=100.0,  # type: ignore[arg-type]
                      stream_told=[100.25, 99.99, 100.1] + [100.2] * 97, stream_untold=2)
    figures = {f.name: f.value for f in push_figures(sale, sold_out=True)}
    assert figures == {"sold_out_push_streams": 102, "sold_out_push_not_told": 2, "sold_out_push_p50_ms": 200.0,
                       "sold_out_push_p99_ms": 200.0, "sold_out_push_max_ms": 250.0}
    assert sale.sold_out_push_ms()[0] == 0.0  # told a moment before the 201 reached its fan: 0
    assert push_figures(sale, sold_out=False) == []  # no sell-out, no push to time


def test_the_picker_takes_neighbours_in_one_row_or_any_free_seats() -> None:
    seats = [{"id": f"s{i}", "section": "A", "row": str(i // 4), "state": "free" if i % 3 else "sold"}
             for i in range(40)]
    rng = random.Random(1)
    for want in (1, 2, 3, 4):
        for _ in range(50):
            picked = pick_seats(seats, want, rng)
            assert len(picked) == want and len(set(picked)) == want
            assert all(int(p[1:]) % 3 for p in picked)
    assert pick_seats([{"id": "x", "section": "A", "row": "1", "state": "held"}], 2, rng) == []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_small_flash_sale_sells_out_with_nothing_oversold_and_fifo_kept(
        redis_url: str, database_url: str, redis_prefix: str, tmp_path: Path) -> None:
    plan = SalePlan(fans=400, seats=60, rate_per_s=20.0, max_active=1000, pre_start_s=2.0, post_join_s=3.0,
                    sale_max_s=40.0, processes=1, queue_connections=16, shop_connections=8, poll_min_s=0.5,
                    poll_max_s=2.0, hold_ttl_s=5, seats_per_row=10, sse_fans=40)
    with running_stack(("admission", "waitingroom", "ticketing", "worker"), redis_url=redis_url,
                       database_url=database_url, prefix=redis_prefix, workdir=tmp_path,
                       STAGEDOOR_HOLD_SWEEP_INTERVAL_S="1", STAGEDOOR_PAYMENT_WINDOW_S="8") as env:
        ctx = replace(asyncio.run(create_sale(env, plan, "small-sale")), redis_prefix=redis_prefix)
        sale = run_sale(ctx, env.url("admission"), env.admin_headers())
        figures = {f.name: f.value for f in asyncio.run(sale_figures(env, ctx, sale))}
    assert not sale.failures, sale.failures
    assert figures["oversold_seats"] == 0 and figures["sold_over_capacity"] == 0, figures
    assert figures["server_errors"] == 0, figures
    assert figures["admitted_early"] == 0, figures
    assert figures["admissions_checked"] > 20 and figures["out_of_order_admissions"] == 0, figures
    assert figures["seats_sold"] == 60 and figures["sold_out"] == 1, figures
    assert 250 <= figures["fans"] <= 400, figures  # late fans may find it sold out
    # every buying fan placed an order, and every order holds at least one of the 60 seats
    assert 0 < figures["fans_bought"] <= figures["orders"] <= figures["seats_sold"], figures
    # the new figures: admitted per order, who found nothing, the sold-out push to the open streams
    assert figures["admitted_per_order"] == round(figures["admitted_total"] / figures["orders"], 3), figures
    assert figures["fans_found_nothing"] == figures["fans_no_seats"] + figures["fans_stopped_looking"], figures
    assert figures["fans_found_nothing_pct"] == round(
        100 * figures["fans_found_nothing"] / figures["fans_admitted"], 2), figures
    assert sale.streams_opened >= 1, figures
    if figures["sold_out_push_streams"]:  # some of the 40 were still waiting at the sell-out
        assert figures["sold_out_push_not_told"] == 0, figures
        assert 0 <= figures["sold_out_push_p50_ms"] <= figures["sold_out_push_p99_ms"] <= figures[
            "sold_out_push_max_ms"], figures
