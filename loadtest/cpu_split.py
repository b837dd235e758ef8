"""Where a request's CPU goes: the servers, Redis, the load generator, in microseconds per request.

On 2 shared cores, requests per second are set by the sum of everyone's CPU per request, the
load generator's and Redis's included. This runs one ``loadtest.driver`` load against servers
you started, samples every process's CPU time (user + system, /proc via psutil) four times a
second, and reports, for the driver's measured window only (its start-up and warm-up left out),
each group's cores and CPU microseconds per request:

    .venv/bin/python -m loadtest.cpu_split --group server=stagedoor.cli --group redis=redis-server \\
        -- waitingroom_status --url waitingroom=http://127.0.0.1:8590 --redis-url redis://127.0.0.1:6390/0 \\
           -p 2 -c 32 -d 8 -w 2

A group is every process whose command line contains its text (the first ``--group`` that matches
wins: ``serve`` would also match ``redis-server``, so name what is specific); the driver's own
worker processes are the group ``load generator``. The window is found from the samples (the
first one with all of the driver's workers seen, plus the warm-up; the last one with them all
alive), so it is as exact as the sampling period. Processes that start and end inside the
window are not seen.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from loadtest.machine import is_ours

SAMPLE_EVERY_S = 0.25
LOAD_GENERATOR = "load generator"
_DRIVER_WORKER = "multiprocessing.spawn"  # the driver's load processes are spawned children
_REQ_PER_S = re.compile(r"= ([\d.]+) req/s")


@dataclass(frozen=True)
class Sample:
    at: float
    cpu_s: dict[int, tuple[str, float]]  # pid -> (group, user + system seconds)


def _group_of(cmdline: str, groups: Sequence[tuple[str, str]], driver_pid: int, parents: set[int]) -> str | None:
    if driver_pid in parents and _DRIVER_WORKER in cmdline:
        return LOAD_GENERATOR
    for name, text in groups:
        if text in cmdline:
            return name
    return None


def sample(groups: Sequence[tuple[str, str]], driver_pid: int, own_only: bool = False) -> Sample:
    """Every matching process's CPU time now; ``own_only``: only processes of the bench's own
    (``driver_pid``'s descendants and the servers registered in loadtest.machine), not another
    run's servers with the same command line."""
    cpu: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            parents = {p.pid for p in proc.parents()} if _DRIVER_WORKER in cmdline else set()
            group = _group_of(cmdline, groups, driver_pid, parents)
            if group is None or (own_only and not is_ours(proc, driver_pid)):
                continue
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cpu[proc.pid] = (group, times.user + times.system)
    return Sample(time.monotonic(), cpu)


def split(samples: Sequence[Sample], warmup_s: float) -> tuple[float, dict[str, float]]:
    """(window seconds, CPU seconds per group) over the driver's measured window."""
    def workers(s: Sample) -> int:
        return sum(1 for group, _ in s.cpu_s.values() if group == LOAD_GENERATOR)

    most = max((workers(s) for s in samples), default=0)
    loaded = [s for s in samples if most and workers(s) == most]  # every load process seen (a start-up
    if len(loaded) < 2:                                              # sample may miss one)
        raise RuntimeError("the driver's load processes were not seen in two samples: run longer")
    start = next((s for s in loaded if s.at >= loaded[0].at + warmup_s), None)
    end = loaded[-1]
    if start is None or end.at - start.at <= 0:
        raise RuntimeError("the measured window fell between two samples: run longer")
    used: dict[str, float] = {}
    for pid, (group, cpu_end) in end.cpu_s.items():
        if pid in start.cpu_s:
            used[group] = used.get(group, 0.0) + max(0.0, cpu_end - start.cpu_s[pid][1])
    return end.at - start.at, used


class CpuDuring:
    """Each group's cores over the measured window of a load this process drives (``run_load``
    inside the block), sampled in a thread; only the bench's own processes count::

        with CpuDuring((("ticketing", "serve ticketing"), ("postgres", "postgres")), warmup_s=2) as cpu:
            result = run_load(...)
        cpu.cores()   # {"ticketing": 1.1, "postgres": 0.3, "load generator": 0.4}
    """

    def __init__(self, groups: Sequence[tuple[str, str]], warmup_s: float) -> None:
        self.groups = tuple(groups)
        self.warmup_s = warmup_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-during", daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            self.samples.append(sample(self.groups, me, own_only=True))
            self._stop.wait(SAMPLE_EVERY_S)

    def __enter__(self) -> CpuDuring:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def cores(self) -> dict[str, float]:
        """Cores per group (CPU seconds over the window's seconds); every group named, 0 when unseen."""
        window_s, used = split(self.samples, self.warmup_s)
        return {name: used.get(name, 0.0) / window_s for name in (*(g for g, _ in self.groups), LOAD_GENERATOR)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.cpu_split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", action="append", default=[], metavar="NAME=TEXT",
                        help="processes whose command line contains TEXT count as NAME (repeatable)")
    parser.add_argument("driver_args", nargs=argparse.REMAINDER, help="-- then the loadtest.driver arguments")
    args = parser.parse_args(argv)
    groups = []
    for item in args.group:
        name, sep, text = item.partition("=")
        if not sep or not name or not text:
            parser.error(f"--group wants NAME=TEXT, got {item!r}")
        groups.append((name, text))
    driver_args = args.driver_args[1:] if args.driver_args[:1] == ["--"] else args.driver_args
    if not driver_args:
        parser.error("give the loadtest.driver arguments after --")
    warmup = argparse.ArgumentParser(add_help=False)
    warmup.add_argument("-w", "--warmup", type=float, default=0.0)
    warmup_s = warmup.parse_known_args(driver_args)[0].warmup
    driver = subprocess.Popen([sys.executable, "-m", "loadtest.driver", *driver_args], stdout=subprocess.PIPE,
                              text=True)
    samples = []
    while driver.poll() is None:
        samples.append(sample(groups, driver.pid))
        time.sleep(SAMPLE_EVERY_S)
    output = driver.stdout.read() if driver.stdout else ""
    print(output, end="")
    if driver.returncode != 0:
        return driver.returncode
    found = _REQ_PER_S.search(output)
    if found is None:
        raise SystemExit("no 'req/s' in the driver's output")
    req_per_s = float(found.group(1))
    window_s, used = split(samples, warmup_s)
    print(f"\nCPU by group over {window_s:.1f} s of the measured window, at {req_per_s:,.0f} req/s:")
    print("| group | cores | CPU per request |")
    print("|---|---|---|")
    for group, cpu_s in sorted(used.items(), key=lambda item: -item[1]):
        print(f"| {group} | {cpu_s / window_s:.2f} | {1e6 * cpu_s / (req_per_s * window_s):.1f} us |")
    print(f"| all | {sum(used.values()) / window_s:.2f} | "
          f"{1e6 * sum(used.values()) / (req_per_s * window_s):.1f} us |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
