"""A fast asyncio load generator: several OS processes, each a uvloop with one aiohttp session,
a fixed number of concurrent keep-alive requests, a bounded duration AND a bounded request count.

One Python process cannot saturate a server on 2 cores, so the load is spread over processes
(``multiprocessing`` spawn). They start together after all of them are ready, run a warm-up whose
requests are not counted, then a measured window. Each process returns its counts and a log-linear
latency histogram (HDR-style, relative error < 0.1 %); the parent merges them.

Only loopback targets are driven: every URL in the env is checked before the run, and every new
connection is checked again by the connector (a scenario cannot wander off to another host).

Run one scenario against servers you started yourself:

    .venv/bin/python -m loadtest.driver healthz --url ticketing=http://127.0.0.1:8081 -p 2 -c 32 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

from loadtest.rawhttp import RawClient
from loadtest.scenario import (
    BenchEnv,
    LoadConfig,
    NotLoopback,
    check_loopback_url,
    expected_statuses,
    is_loopback_host,
    load_config,
    load_scenario,
)

# ----------------------------------------------------------------------------- histogram

SUB_BUCKET_BITS = 11  # 2048 exact values, then 1024 buckets per power of two: relative error < 2^-10


def bucket_of(value_us: int) -> int:
    """The histogram bucket (its lowest value, in microseconds) a latency falls into."""
    if value_us < (1 << SUB_BUCKET_BITS):
        return max(0, value_us)
    shift = value_us.bit_length() - SUB_BUCKET_BITS
    return (value_us >> shift) << shift


class Histogram:
    """Latency counts in log-linear microsecond buckets; merging is adding counts."""

    __slots__ = ("counts", "max_us", "total")

    def __init__(self, counts: Mapping[int, int] | None = None, max_us: int = 0) -> None:
        self.counts: dict[int, int] = dict(counts or {})
        self.total = sum(self.counts.values())
        self.max_us = max(max_us, max(self.counts, default=0))

    def record_us(self, value_us: int) -> None:
        b = bucket_of(value_us)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.total += 1
        if value_us > self.max_us:
            self.max_us = value_us

    def merge(self, other: Histogram) -> Histogram:
        for b, n in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + n
        self.total += other.total
        self.max_us = max(self.max_us, other.max_us)
        return self

    def percentile_us(self, p: float) -> int:
        """The smallest recorded bucket value with at least p % of the samples at or below it."""
        if not 0 <= p <= 100:
            raise ValueError("percentile must be in [0, 100]")
        if self.total == 0:
            return 0
        if p == 100:
            return self.max_us
        rank = max(1, math.ceil(self.total * p / 100))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return b
        return self.max_us  # pragma: no cover - counts sum to total

    def to_wire(self) -> tuple[dict[int, int], int]:
        return self.counts, self.max_us

    @classmethod
    def from_wire(cls, wire: tuple[dict[int, int], int]) -> Histogram:
        return cls(wire[0], wire[1])


# ----------------------------------------------------------------------------- results

@dataclass
class WorkerResult:
    """What one load-generator process measured in its window."""

    requests: int = 0                                       # measured (warm-up excluded), responses + exceptions
    statuses: dict[int, int] = field(default_factory=dict)  # measured, by HTTP status
    exceptions: dict[str, int] = field(default_factory=dict)
    window_s: float = 0.0                                   # measured window actually used
    issued: int = 0                                         # all requests, warm-up included
    histogram: Histogram = field(default_factory=Histogram)
    failure: str = ""                                       # a crash of the process (traceback)

    def to_wire(self) -> dict[str, Any]:
        return {"requests": self.requests, "statuses": self.statuses, "exceptions": self.exceptions,
                "window_s": self.window_s, "issued": self.issued, "histogram": self.histogram.to_wire(),
                "failure": self.failure}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> WorkerResult:
        return cls(requests=wire["requests"], statuses=dict(wire["statuses"]), exceptions=dict(wire["exceptions"]),
                   window_s=wire["window_s"], issued=wire["issued"],
                   histogram=Histogram.from_wire(wire["histogram"]), failure=wire["failure"])


@dataclass
class RunResult:
    """Merged results of every process of one run."""

    requests: int
    statuses: dict[int, int]
    exceptions: dict[str, int]
    window_s: float
    issued: int
    histogram: Histogram
    expected: frozenset[int]
    failures: list[str]
    config: LoadConfig

    @property
    def errors(self) -> int:
        unexpected = sum(n for s, n in self.statuses.items() if s not in self.expected)
        return unexpected + sum(self.exceptions.values())

    @property
    def req_per_s(self) -> float:
        return self.requests / self.window_s if self.window_s > 0 else 0.0

    def errors_by_status(self) -> dict[str, int]:
        out = {str(s): n for s, n in sorted(self.statuses.items()) if s not in self.expected}
        out.update(sorted(self.exceptions.items()))
        return out

    def summary(self) -> dict[str, Any]:
        h = self.histogram
        return {
            "requests": self.requests,
            "req_per_s": round(self.req_per_s, 1),
            "p50_ms": h.percentile_us(50) / 1000,
            "p90_ms": h.percentile_us(90) / 1000,
            "p99_ms": h.percentile_us(99) / 1000,
            "max_ms": h.max_us / 1000,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 6) if self.requests else 0.0,
            "errors_by_status": self.errors_by_status(),
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "window_s": round(self.window_s, 3),
            "issued": self.issued,
            "processes": self.config.processes,
            "concurrency": self.config.concurrency,
            "failures": len(self.failures),
        }


def merge_results(results: Iterable[WorkerResult], expected: frozenset[int], config: LoadConfig) -> RunResult:
    """Merge per-process results: counts add up, the window is the longest one (they run side by side)."""
    histogram = Histogram()
    statuses: dict[int, int] = {}
    exceptions: dict[str, int] = {}
    requests = issued = 0
    window_s = 0.0
    failures: list[str] = []
    for r in results:
        requests += r.requests
        issued += r.issued
        window_s = max(window_s, r.window_s)
        for s, n in r.statuses.items():
            statuses[s] = statuses.get(s, 0) + n
        for e, n in r.exceptions.items():
            exceptions[e] = exceptions.get(e, 0) + n
        histogram.merge(r.histogram)
        if r.failure:
            failures.append(r.failure)
    return RunResult(requests=requests, statuses=statuses, exceptions=exceptions, window_s=window_s,
                     issued=issued, histogram=histogram, expected=expected, failures=failures, config=config)


def format_summary(name: str, result: RunResult) -> str:
    s = result.summary()
    line = (f"{name}: {s['requests']} req in {s['window_s']}s = {s['req_per_s']:.0f} req/s, "
            f"p50 {s['p50_ms']:.2f} ms, p90 {s['p90_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, "
            f"max {s['max_ms']:.1f} ms, errors {s['errors']} {s['errors_by_status'] or ''} "
            f"({s['processes']}x{s['concurrency']} conc)")
    if result.failures:
        line += f"\n  {len(result.failures)} load process(es) failed:\n" + "\n".join(result.failures)
    return line


# ----------------------------------------------------------------------------- per-process state

@dataclass
class WorkerState:
    """Per concurrent task: who am I, a scratch dict the scenario may fill in worker_setup(), and
    ``http``, this task's own lean keep-alive client (loadtest.rawhttp) for scenarios that want the
    driver to cost as little CPU as possible."""

    process_index: int
    task_index: int
    processes: int
    concurrency: int
    env: BenchEnv
    data: dict[str, Any] = field(default_factory=dict)
    sequence: int = 0
    http: RawClient = field(default_factory=RawClient)

    @property
    def global_index(self) -> int:
        return self.process_index * self.concurrency + self.task_index

    def next_id(self) -> int:
        """A number no other task of this run will get (0, 1, 2, ... interleaved over all tasks)."""
        n = self.sequence * self.processes * self.concurrency + self.global_index
        self.sequence += 1
        return n


def _loopback_connector(limit: int) -> Any:
    import aiohttp

    class LoopbackConnector(aiohttp.TCPConnector):
        """Refuses to open a connection to anything but this machine."""

        async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109
            if not is_loopback_host(req.url.host):
                raise NotLoopback(f"refusing to connect to {req.url.host}: loopback targets only")
            return await super()._create_connection(req, traces, timeout)

    return LoopbackConnector(limit=limit, limit_per_host=0, ttl_dns_cache=None, keepalive_timeout=60)


@dataclass(frozen=True)
class _Job:
    scenario: str
    ctx: Any
    env: BenchEnv
    config: LoadConfig
    process_index: int
    max_requests: int  # this process's share


async def _run_process(job: _Job, conn: Connection) -> WorkerResult:
    import aiohttp

    module = load_scenario(job.scenario)
    request = module.request
    worker_setup = getattr(module, "worker_setup", None)
    cfg = job.config
    result = WorkerResult()
    timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s)
    async with aiohttp.ClientSession(connector=_loopback_connector(cfg.concurrency), timeout=timeout) as session:
        states = [WorkerState(job.process_index, i, cfg.processes, cfg.concurrency, job.env,
                              http=RawClient(cfg.request_timeout_s)) for i in range(cfg.concurrency)]
        if worker_setup is not None:
            await asyncio.gather(*(worker_setup(session, job.ctx, st) for st in states))
        conn.send(("ready", None))
        start_wall = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        # Map the shared wall-clock start onto this process's perf_counter.
        offset = start_wall - time.time()
        perf_start = time.perf_counter() + offset
        measure_from = perf_start + cfg.warmup_s
        stop_at = measure_from + cfg.duration_s
        if offset > 0:
            await asyncio.sleep(offset)
        histogram = result.histogram
        statuses = result.statuses
        exceptions = result.exceptions
        budget = [job.max_requests]
        last_done = [measure_from]
        perf_counter = time.perf_counter

        async def task(state: WorkerState) -> None:
            while budget[0] > 0:
                budget[0] -= 1
                t0 = perf_counter()
                try:
                    status: int | None = await request(session, job.ctx, state)
                    failure = ""
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    status, failure = None, type(exc).__name__
                t1 = perf_counter()
                if t1 >= stop_at:
                    return
                if t0 >= measure_from:
                    if status is None:  # no response: counted, but not in the latency percentiles
                        exceptions[failure] = exceptions.get(failure, 0) + 1
                    else:
                        statuses[status] = statuses.get(status, 0) + 1
                        histogram.record_us(int((t1 - t0) * 1_000_000))
                    last_done[0] = t1
                if status is None:
                    await asyncio.sleep(0.01)  # a refused connection must not spin the loop

        try:
            await asyncio.gather(*(task(st) for st in states))
        finally:
            for st in states:
                st.http.close()
        ended = min(perf_counter(), stop_at)
        if budget[0] <= 0:  # stopped by the request bound: the window ends at the last measured reply
            ended = min(ended, last_done[0])
        result.window_s = max(0.0, ended - measure_from)
        result.issued = job.max_requests - max(budget[0], 0)
        result.requests = histogram.total + sum(exceptions.values())
    return result


def _process_main(job: _Job, conn: Connection) -> None:
    try:
        try:
            import uvloop

            result = uvloop.run(_run_process(job, conn))
        except ImportError:  # pragma: no cover - uvloop is a dependency
            result = asyncio.run(_run_process(job, conn))
        conn.send(("result", result.to_wire()))
    except BaseException:
        conn.send(("result", WorkerResult(failure=traceback.format_exc()).to_wire()))
    finally:
        conn.close()


def check_env(env: BenchEnv) -> None:
    for url in env.urls.values():
        check_loopback_url(url)


def split_requests(total: int, processes: int) -> list[int]:
    """Share a request bound among processes (the first ones get the remainder)."""
    base, rest = divmod(total, processes)
    return [base + (1 if i < rest else 0) for i in range(processes)]


def run_load(scenario: str, ctx: Any, env: BenchEnv, config: LoadConfig,
             start_timeout_s: float = 60.0) -> RunResult:
    """Drive ``scenario`` with ``config``; blocks until every process reported. Loopback only."""
    check_env(env)
    module = load_scenario(scenario)
    expected = expected_statuses(module)
    mp = multiprocessing.get_context("spawn")
    shares = split_requests(config.max_requests, config.processes)
    pipes: list[Connection] = []
    procs: list[Any] = []
    for i in range(config.processes):
        parent_end, child_end = mp.Pipe()
        job = _Job(scenario, ctx, env, config, i, shares[i])
        proc = mp.Process(target=_process_main, args=(job, child_end), daemon=True, name=f"load-{scenario}-{i}")
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        procs.append(proc)
    results: list[WorkerResult] = []
    finished = False
    try:
        ready: list[Connection] = []
        deadline = time.monotonic() + start_timeout_s
        for pipe in pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"load process for {scenario} not ready in {start_timeout_s}s")
            kind, payload = pipe.recv()
            if kind == "result":  # crashed during start-up
                results.append(WorkerResult.from_wire(payload))
            else:
                ready.append(pipe)
        start_wall = time.time() + 0.05
        for pipe in ready:
            pipe.send(start_wall)
        bound_s = config.warmup_s + config.duration_s + config.request_timeout_s + 30
        for pipe in ready:
            if not pipe.poll(bound_s):
                raise TimeoutError(f"load process for {scenario} did not finish in {bound_s}s")
            kind, payload = pipe.recv()
            results.append(WorkerResult.from_wire(payload))
        finished = True
    finally:
        for proc in procs:
            if not finished:  # interrupted (Ctrl-C, SIGTERM, a timeout): stop the load now
                proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in pipes:
            pipe.close()
    return merge_results(results, expected, config)


# ----------------------------------------------------------------------------- CLI

async def _setup(module: Any, env: BenchEnv) -> Any:
    return await module.setup(env)


async def _teardown(module: Any, env: BenchEnv, ctx: Any) -> None:
    teardown = getattr(module, "teardown", None)
    if teardown is not None:
        await teardown(env, ctx)


def _parse_urls(pairs: list[str]) -> dict[str, str]:
    urls: dict[str, str] = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep:
            raise SystemExit(f"--url wants component=URL, got {pair!r}")
        urls[name] = check_loopback_url(url.rstrip("/"))
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.driver",
                                     description="Drive one scenario against servers you started (loopback only).")
    parser.add_argument("scenario", help="short name under loadtest/scenarios/ or a module path")
    parser.add_argument("--url", action="append", default=[], metavar="COMPONENT=URL",
                        help="base URL of a component, e.g. ticketing=http://127.0.0.1:8081 (repeatable)")
    parser.add_argument("--admin-api-key", default="")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--signing-keys-dir", default="",
                        help="the services' STAGEDOOR_SIGNING_KEYS_DIR (scenarios that mint access tokens)")
    parser.add_argument("-p", "--processes", type=int)
    parser.add_argument("-c", "--concurrency", type=int)
    parser.add_argument("-d", "--duration", type=float)
    parser.add_argument("-w", "--warmup", type=float)
    parser.add_argument("-n", "--max-requests", type=int)
    args = parser.parse_args(argv)
    try:
        env = BenchEnv(urls=_parse_urls(args.url), redis_url=args.redis_url, database_url=args.database_url,
                       admin_api_key=args.admin_api_key, signing_keys_dir=args.signing_keys_dir)
    except NotLoopback as exc:
        print(f"loadtest.driver: {exc}", file=sys.stderr)
        return 2
    module = load_scenario(args.scenario)
    config = load_config(module)
    overrides = {k: v for k, v in (("processes", args.processes), ("concurrency", args.concurrency),
                                   ("duration_s", args.duration), ("warmup_s", args.warmup),
                                   ("max_requests", args.max_requests)) if v is not None}
    config = replace(config, **overrides)
    ctx = asyncio.run(_setup(module, env))
    try:
        result = run_load(args.scenario, ctx, env, config)
    finally:
        asyncio.run(_teardown(module, env, ctx))
    print(format_summary(args.scenario, result))
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
