"""make bench's planning: which scenarios run and which raw limits they need (nothing is measured here)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from loadtest.bench import family_of, find_scenarios, limit_families
from loadtest.scenario import BenchEnv


def test_healthz_is_a_ready_scenario_and_helpers_are_not_scenarios() -> None:
    candidates = {c.name: c for c in find_scenarios([])}
    assert candidates["healthz"].ready
    assert not any(name.startswith("_") for name in candidates)


def test_an_unknown_scenario_name_is_refused() -> None:
    with pytest.raises(SystemExit):
        find_scenarios(["no_such_scenario"])


def test_only_the_limit_families_a_chosen_scenario_names_are_measured() -> None:
    assert family_of("redis_join_p16") == "redis"
    assert family_of("pgbench_purchase_cte") == "postgres"
    assert family_of("hello_2p") == "stack"
    assert limit_families(find_scenarios(["healthz"]), selective=True) == ("stack",)
    assert family_of("jwt_verify_eddsa") == "cpu"
    assert limit_families(find_scenarios([]), selective=False) == ("redis", "postgres", "stack", "cpu")


def test_service_processes_get_this_runs_stores_ports_and_secrets() -> None:
    env = BenchEnv(urls={"ticketing": "http://127.0.0.1:40001", "worker": "http://127.0.0.1:40002"},
                   redis_url="redis://127.0.0.1:40003/0", database_url="postgresql://x@127.0.0.1/db",
                   admin_api_key="k", signing_keys_dir="/tmp/keys")
    spec = env.stagedoor("ticketing", processes=2, STAGEDOOR_HOLD_TTL_S="60")
    assert spec.argv[-4:] == ("serve", "ticketing", "--processes", "2")
    assert spec.url == "http://127.0.0.1:40001"
    assert spec.env["STAGEDOOR_TICKETING_PORT"] == "40001"
    assert spec.env["STAGEDOOR_WORKER_PORT"] == "40002"
    assert "STAGEDOOR_PUBLIC_WORKER_URL" not in spec.env  # no such setting
    assert spec.env["STAGEDOOR_HOLD_TTL_S"] == "60"
    assert "STAGEDOOR_QUEUE_TOKEN_SECRET" not in spec.env  # empty values are left out


def test_a_scenario_and_hello_world_are_measured_in_alternating_rounds(tmp_path: Path) -> None:
    """For real: hello world interleaved with itself (as the scenario), two short rounds."""
    from loadtest.bench import run_interleaved
    from loadtest.limits import LimitsPlan, hello_server
    from loadtest.report import ScenarioOutcome
    from loadtest.scenario import LoadConfig
    from stagedoor.embedded import EmbeddedRedis

    redis = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        with hello_server(redis.url, processes=1) as base:
            env = BenchEnv(urls={"hello": base}, extra={"hello_path": "/hello", "client": "raw", "method": "GET"})
            ctx = {"url": base + "/hello", "client": "raw", "method": "GET"}
            config = LoadConfig(processes=1, concurrency=4, duration_s=1.0, warmup_s=0.2, max_requests=1_000_000)
            outcome = ScenarioOutcome(name="hello_as_scenario")
            result = run_interleaved("loadtest.scenarios._hello", ctx, env, config, "hello_2p", redis.url,
                                     LimitsPlan(quick=True), outcome, rounds=2)
        with pytest.raises(ValueError):
            run_interleaved("x", ctx, env, config, "evalsha_2p", redis.url, LimitsPlan(quick=True), outcome)
    finally:
        redis.stop()
    assert result.requests > 0 and not result.failures
    limit = outcome.interleaved["hello_2p"]
    assert limit.value > 0 and "alternating with loadtest.scenarios._hello" in limit.label
    figures = {f.name: f.value for f in outcome.figures}
    assert figures["req_per_s_vs_hello_2p_rounds"] == 2
    assert 0 < figures["req_per_s_vs_hello_2p_min"] <= figures["req_per_s_vs_hello_2p_max"]


def test_the_gateway_scenarios_are_ready_and_name_the_limit_measured_with_their_concurrency() -> None:
    from loadtest.limits import CHARGED_CONCURRENCY, CHARGED_LIMIT, LimitsPlan
    from loadtest.scenarios import purchase_gateway_latency

    candidates = {c.name: c for c in find_scenarios([])}
    assert candidates["purchase_gateway_latency"].ready and candidates["purchase_stripe"].ready
    assert limit_families(find_scenarios(["purchase_gateway_latency"]), selective=True) == ("stack",)
    assert CHARGED_LIMIT in {t.limit for t in purchase_gateway_latency.TARGETS}
    load = purchase_gateway_latency.LOAD
    assert load.concurrency == LimitsPlan().charged_load.concurrency == CHARGED_CONCURRENCY
    assert load.processes * load.concurrency >= 400  # 1,000/s with 300 ms charges needs 300+ in flight


def test_every_scenario_gets_a_loopback_port_for_a_local_stripe(tmp_path: Path) -> None:
    from loadtest.bench import Stores, scenario_env
    from loadtest.scenarios import purchase_stripe

    stores = Stores(tmp_path, "postgresql://x@127.0.0.1/postgres", "postgresql://x@127.0.0.1/db", None, "db")
    env = scenario_env(stores, "redis://127.0.0.1:1/0", tmp_path / "keys", {"admin_api_key": "k",
                                                                           "queue_token_secret": "s"})
    localstripe, ticketing = purchase_stripe.servers(env)
    assert localstripe.url == env.url("stripe") != env.url("ticketing")
    assert localstripe.argv[-2:] == ("--port", str(urlsplit(env.url("stripe")).port))
    assert ticketing.env["STAGEDOOR_STRIPE_API_BASE"] == env.url("stripe")
    assert ticketing.env["STAGEDOOR_PAYMENT_GATEWAY"] == "stripe"
    assert "STAGEDOOR_STRIPE_PORT" not in ticketing.env  # not a component of ours
