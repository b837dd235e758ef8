"""The purchase scenarios with a gateway (loadtest/scenarios/purchase_gateway_latency.py,
purchase_stripe.py) run for real through the bench, briefly (``--quick``), on a database of the
test server: their servers start (a local Stripe too), purchases succeed, and the charged-once
checks read clean (one charge per order at the gateway, one payments row per order)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtest.bench import main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CHARGED_ONCE = ("double_charges", "orders_without_one_payment", "payments_without_order",
                "charge_attempts_unsettled", "oversold_seats")


def run_quick(scenario: str, pg_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("STAGEDOOR_BENCH_DATABASE_URL", pg_server_url)  # a database of its own, dropped after
    # a small pool per process: the test server's connections are shared with other tests
    code = main(["--only", scenario, "--quick", "--no-limits", "--results-dir", str(tmp_path),
                 "--setting", "db_pool_max_size=5"])
    [report] = tmp_path.glob("*.json")
    [outcome] = json.loads(report.read_text())["scenarios"]
    assert code == 0 and outcome["status"] == "ran", outcome
    return outcome


def figures_of(outcome: dict[str, Any]) -> dict[str, float]:
    return {f["name"]: f["value"] for f in outcome["figures"]}


def test_purchases_with_a_slow_gateway_are_charged_once_as_each_process_counts_them(
        pg_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_quick("purchase_gateway_latency", pg_server_url, tmp_path, monkeypatch)
    figures = figures_of(outcome)
    assert outcome["summary"]["errors"] == 0 and outcome["summary"]["requests"] > 0, outcome["summary"]
    assert figures["metrics_processes_read"] == 2, figures
    assert figures["orders_committed"] > 0 and figures["gateway_charges"] == figures["orders_committed"], figures
    assert all(figures[name] == 0 for name in CHARGED_ONCE), figures
    assert outcome["summary"]["p50_ms"] >= 300  # every purchase waited for its charge
    # (the test server's PostgreSQL is not the bench's own: its CPU is not counted here)
    assert figures["cpu_cores_ticketing"] > 0 and figures["cpu_cores_load_generator"] > 0, figures


def test_purchases_through_stripe_make_one_succeeded_payment_intent_each(
        pg_server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_quick("purchase_stripe", pg_server_url, tmp_path, monkeypatch)
    figures = figures_of(outcome)
    assert outcome["summary"]["errors"] == 0 and outcome["summary"]["requests"] > 0, outcome["summary"]
    assert figures["orders_committed"] > 0 and figures["gateway_charges"] == figures["orders_committed"], figures
    assert figures["gateway_keys_charged_twice"] == 0 and figures["payment_intents_not_succeeded"] == 0, figures
    assert all(figures[name] == 0 for name in CHARGED_ONCE), figures
    assert any("stagedoor.dev_stripe" in server for server in outcome["servers"]), outcome["servers"]
    assert figures["cpu_cores_localstripe"] > 0, figures
