"""loadtest.cpu_split: CPU per request by process group over the driver's measured window."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.cpu_split import LOAD_GENERATOR, Sample, _group_of, main, split

GROUPS = (("server", "serve waitingroom"), ("redis", "redis-server"))


def test_processes_are_grouped_by_command_line_and_driver_workers_by_parent() -> None:
    assert _group_of("python -m stagedoor.cli serve waitingroom --processes 2", GROUPS, 10, set()) == "server"
    assert _group_of("/usr/bin/redis-server 127.0.0.1:6390", GROUPS, 10, set()) == "redis"
    worker = "python -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=6)"
    assert _group_of(worker, GROUPS, 10, {1, 10}) == LOAD_GENERATOR
    assert _group_of(worker, GROUPS, 10, {1, 99}) is None  # somebody else's multiprocessing child
    assert _group_of("bash", GROUPS, 10, set()) is None


def test_only_the_measured_window_is_counted() -> None:
    def at(t: float, server: float, redis: float, load: float | None) -> Sample:
        cpu = {1: ("server", server), 2: ("redis", redis)}
        if load is not None:
            cpu[3] = (LOAD_GENERATOR, load)
        return Sample(t, cpu)

    samples = [at(0.0, 0.0, 0.0, None),   # start-up: no load processes yet
               at(1.0, 5.0, 1.0, 0.0),    # the load processes appear; warm-up of 2 s follows
               at(2.0, 6.0, 1.2, 0.5),
               at(3.0, 7.0, 1.4, 1.0),    # the window opens here
               at(5.0, 9.0, 1.8, 2.0),
               at(7.0, 11.0, 2.2, 3.0),   # the last sample with the load processes alive
               at(8.0, 30.0, 9.0, None)]  # after: not counted
    window_s, used = split(samples, warmup_s=2.0)
    assert window_s == 4.0
    assert used == pytest.approx({"server": 4.0, "redis": 0.8, LOAD_GENERATOR: 2.0})


def test_the_window_starts_once_every_load_process_is_seen() -> None:
    samples = [Sample(0.0, {3: (LOAD_GENERATOR, 0.0)}),  # the second load process not seen yet
               Sample(1.0, {3: (LOAD_GENERATOR, 0.5), 4: (LOAD_GENERATOR, 0.5)}),
               Sample(2.0, {3: (LOAD_GENERATOR, 1.0), 4: (LOAD_GENERATOR, 1.0)})]
    window_s, used = split(samples, warmup_s=0.0)
    assert (window_s, used) == (1.0, {LOAD_GENERATOR: 1.0})


def test_a_run_too_short_to_see_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        split([Sample(0.0, {1: (LOAD_GENERATOR, 0.0)})], warmup_s=0.0)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--group", "nonsense", "--", "healthz"])
    with pytest.raises(SystemExit):
        main(["--group", "server=serve"])


def test_own_only_leaves_out_processes_the_bench_did_not_start() -> None:
    import os

    import psutil

    from loadtest.cpu_split import sample

    init = " ".join(psutil.Process(1).cmdline())
    groups = (("init", init),)
    assert 1 in sample(groups, os.getpid()).cpu_s
    assert 1 not in sample(groups, os.getpid(), own_only=True).cpu_s


def test_cpu_during_a_load_is_split_by_group(tmp_path: Path) -> None:
    """For real: a short load on the hello-world server, its CPU and the load generator's."""
    from loadtest.cpu_split import CpuDuring
    from loadtest.limits import hello_server, run_hello
    from loadtest.scenario import LoadConfig
    from stagedoor.embedded import EmbeddedRedis

    redis = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        with hello_server(redis.url, processes=1) as base, \
                CpuDuring((("hello", "loadtest.hello_server"),), warmup_s=0.5) as cpu:
            result = run_hello(base, LoadConfig(processes=1, concurrency=8, duration_s=2.0, warmup_s=0.5))
    finally:
        redis.stop()
    assert result.requests > 0
    cores = cpu.cores()
    assert set(cores) == {"hello", LOAD_GENERATOR}
    assert 0 < cores["hello"] <= 1.5 and 0 < cores[LOAD_GENERATOR] <= 1.5, cores
