"""The bench report's verdicts: each figure against its target and its same-run limit."""

from __future__ import annotations

from typing import Any

from loadtest.limits import Limit
from loadtest.report import ScenarioOutcome, evaluate, machine_description, now_utc, render_markdown
from loadtest.scenario import Figure, LoadConfig, Target

SUMMARY = {"req_per_s": 6000.0, "p50_ms": 3.0, "p90_ms": 6.0, "p99_ms": 40.0, "max_ms": 90.0, "requests": 60000,
           "errors": 0, "errors_by_status": {}}


def outcome(*targets: Target, figures: tuple[Figure, ...] = ()) -> ScenarioOutcome:
    return ScenarioOutcome(name="join", summary=SUMMARY, targets=targets, figures=list(figures),
                           load=LoadConfig())


def test_a_ratio_target_is_judged_against_the_limit_of_the_same_run() -> None:
    limits = {"hello_2p": Limit("hello_2p", "hello", 10000.0)}
    met, missed = evaluate(outcome(Target("req_per_s", limit="hello_2p", min_ratio=0.5),
                                   Target("req_per_s", limit="hello_2p", min_ratio=0.9)), limits)
    assert (met.ratio, met.met) == (0.6, True)
    assert (missed.ratio, missed.met) == (0.6, False)


def test_absolute_targets_and_scenario_figures() -> None:
    rows = evaluate(outcome(Target("p99_ms", max_value=50), Target("oversold_seats", max_value=0),
                            figures=(Figure("oversold_seats", 1, "seats"),)), {})
    assert [r.met for r in rows] == [True, False]
    assert rows[1].unit == "seats"


def test_a_limit_not_measured_in_this_run_gives_no_verdict() -> None:
    (row,) = evaluate(outcome(Target("req_per_s", limit="hello_2p", min_ratio=0.5)), {})
    assert row.ratio is None
    assert row.met is None


def test_a_failed_scenario_misses_its_targets() -> None:
    failed = outcome(Target("p99_ms", max_value=50))
    failed.status = "failed"
    (row,) = evaluate(failed, {})
    assert row.met is False


def test_the_markdown_names_the_command_the_machine_and_the_limits() -> None:
    limits = [Limit("hello_2p", "aiohttp hello world", 10000.0, command="python -m loadtest.hello_server")]
    text = render_markdown(started_at=now_utc(), command="make bench", machine=machine_description("PostgreSQL 15"),
                           limits=limits, outcomes=[outcome(Target("req_per_s", limit="hello_2p", min_ratio=0.5))],
                           problems=[], elapsed_s=12.0)
    assert "Command: `make bench`" in text
    assert "| join req_per_s | 6,000 req/s | hello_2p 10,000 req/s | 0.600 | >= 0.5x hello_2p | yes |" in text
    assert "cpus (nproc)" in text and "PostgreSQL 15" in text


def test_the_busy_indicator_measures_other_processes_cpu() -> None:
    """A process outside our tree (started through a shell that exits at once) spins through the
    window: the indicator counts at least a good part of a core, and never more than the machine has."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from loadtest.machine import OthersLoad

    spin = "import time\nend = time.monotonic() + 15\nwhile time.monotonic() < end: pass"
    started = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{spin}" >/dev/null 2>&1 & echo $!'],
                             capture_output=True, text=True, timeout=10, check=True)
    pid = int(started.stdout)
    try:
        spinner = psutil.Process(pid)
        deadline = time.monotonic() + 10
        while sum(spinner.cpu_times()[:2]) < 0.05 and time.monotonic() < deadline:  # it runs
            time.sleep(0.02)
        with OthersLoad() as busy:
            time.sleep(0.5)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert busy.cores is not None
    # the spinner alone has a core when the machine is free; others busy take from its share
    # but count themselves, so only a crowd of short-lived processes could bring this lower
    assert 0.25 <= busy.cores <= (os.cpu_count() or 1) + 0.5, busy.cores


def test_a_busy_machine_is_called_out_in_the_report() -> None:
    busy = outcome(Target("p99_ms", max_value=50))
    busy.others_cores = 1.2
    text = render_markdown(started_at=now_utc(), command="make bench", machine={}, limits=[], outcomes=[busy],
                           problems=[], elapsed_s=1.0)
    assert "**Machine busy:**" in text


def test_a_daemonized_server_of_ours_is_read_from_its_postmaster_pid(tmp_path: Any) -> None:
    from loadtest.machine import postmaster_pid

    (tmp_path / "postmaster.pid").write_text("4242\n/var/lib/pg\n1700000000\n")
    assert postmaster_pid(tmp_path) == 4242
    assert postmaster_pid(tmp_path / "missing") is None


def test_a_limit_measured_interleaved_with_the_scenario_is_the_one_it_is_judged_against() -> None:
    paired = outcome(Target("req_per_s", limit="hello_2p", min_ratio=0.5))
    paired.interleaved["hello_2p"] = Limit("hello_2p", "hello world, alternating with join", 12000.0,
                                           command="python -m loadtest.hello_server (alternating with join)")
    limits = [Limit("hello_2p", "aiohttp hello world", 10000.0, command="python -m loadtest.hello_server")]
    (row,) = evaluate(paired, {limit.name: limit for limit in limits})
    assert (row.limit_name, row.limit_value, row.ratio, row.met) == ("hello_2p (interleaved)", 12000.0, 0.5, True)
    text = render_markdown(started_at=now_utc(), command="make bench", machine=machine_description(""),
                           limits=limits, outcomes=[paired], problems=[], elapsed_s=1.0)
    assert "| join req_per_s | 6,000 req/s | hello_2p (interleaved) 12,000 req/s | 0.500 |" in text
    assert "| hello_2p | aiohttp hello world | 10,000 req/s |" in text  # the run's own stays listed
    assert "| hello_2p (interleaved with join) | hello world, alternating with join | 12,000 req/s |" in text
