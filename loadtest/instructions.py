"""Instructions per request, counted by callgrind: a repeatable measure for a noisy host.

Requests per second on a shared 2-core VM move by 10-15 % from one minute to the next, more than
most single changes to a hot path gain. callgrind counts the instructions the server process
executes, which do not depend on what else runs on the machine. So an A/B of one change reads
the same every time (within about 3 % for join, whose batching of Redis calls varies a little).

It starts, each under ``valgrind --tool=callgrind``, one process of the hello-world server
(loadtest/hello_server.py) and one of the waiting room, on a throwaway redis-server. It creates
a paused room with visitors waiting and, for each kind of request, sends a warm-up, zeroes the
counters, sends ``--requests`` requests from 32 keep-alive connections, and reads the count.

    .venv/bin/python -m loadtest.instructions                       # hello, pipelined, status, join
    .venv/bin/python -m loadtest.instructions status join --requests 3200

Kinds: ``hello`` (hello world), ``pipelined`` (bare handler + one EVALSHA through our pipelining
client), ``healthz``, ``status``, ``join`` (the waiting room). What it does not count: the kernel
(system calls cost real time, not counted instructions), Redis, the client. So it answers "how
much Python work does a request cost us", not "how many requests per second": ``make bench``
answers that. Needs valgrind (Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from loadtest.limits import stop_process
from loadtest.rawhttp import RawClient, RawResponse
from loadtest.scenarios._waitingroom import (
    bench_room,
    bulk_join_at,
    create_room,
    lone_waiting_room_env,
    lone_waiting_room_stores,
)
from stagedoor.embedded import free_port

KINDS = ("hello", "pipelined", "healthz", "status", "join")
CONNECTIONS = 32
WARMUP_PER_CONNECTION = 10
ROOM = "instr"
STARTUP_TIMEOUT_S = 180.0  # Python under valgrind starts some 50 times slower

Request = Callable[[RawClient, int], Awaitable[RawResponse]]


class Counted:
    """One server process under callgrind; ``count()`` reads instructions since ``zero()``."""

    def __init__(self, argv: list[str], env: dict[str, str], out_dir: Path) -> None:
        self.out_dir = out_dir
        self.process = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--collect-atstart=yes",
             f"--callgrind-out-file={out_dir}/callgrind.%p.out", *argv],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def zero(self) -> None:
        subprocess.run(["callgrind_control", "--zero", str(self.process.pid)], check=True, capture_output=True)

    def count(self) -> int:
        subprocess.run(["callgrind_control", "--dump", str(self.process.pid)], check=True, capture_output=True)
        dumps = sorted(self.out_dir.glob(f"callgrind.{self.process.pid}.out.*"), key=os.path.getmtime)
        total = 0
        for line in dumps[-1].read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
        for dump in dumps:
            dump.unlink()
        return total

    def stop(self) -> None:
        stop_process(self.process, timeout_s=30)  # Python under valgrind is slow to exit too


async def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    client = RawClient(timeout_s=30)
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
    try:
        while asyncio.get_running_loop().time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
            try:
                if (await client.get(url)).status == 200:
                    return
            except OSError:
                client.close()
            await asyncio.sleep(0.25)
    finally:
        client.close()
    raise RuntimeError(f"{url} did not answer in {STARTUP_TIMEOUT_S:.0f} s")


async def _per_request(server: Counted, request: Request, requests: int) -> float:
    """Instructions per request over ``requests`` (rounded down to whole rounds of connections)."""
    clients = [RawClient(timeout_s=120) for _ in range(CONNECTIONS)]
    per_connection = max(1, requests // CONNECTIONS)

    async def drive(client: RawClient, index: int, count: int) -> None:
        for _ in range(count):
            response = await request(client, index)
            if response.status not in (200, 201):
                raise RuntimeError(f"unexpected {response.status}: {response.body[:200]!r}")

    try:
        await asyncio.gather(*(drive(c, i, WARMUP_PER_CONNECTION) for i, c in enumerate(clients)))
        server.zero()
        await asyncio.gather(*(drive(c, i, per_connection) for i, c in enumerate(clients)))
        return server.count() / (per_connection * CONNECTIONS)
    finally:
        for client in clients:
            client.close()


async def measure(kinds: list[str], requests: int, ahead: int) -> dict[str, float]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="stagedoor-instr-") as tmp:
        work = Path(tmp)
        redis, keys_dir = lone_waiting_room_stores(work)
        hello_port, wr_port = free_port(), free_port()
        env = lone_waiting_room_env(redis.url, keys_dir, wr_port)
        servers: list[Counted] = []
        try:
            hello = Counted([sys.executable, "-m", "loadtest.hello_server", "--port", str(hello_port),
                             "--processes", "1", "--redis-url", redis.url], env, work)
            servers.append(hello)
            room = Counted([sys.executable, "-m", "stagedoor.cli", "serve", "waitingroom", "--processes", "1"],
                           env, work)
            servers.append(room)
            await create_room(redis.url, bench_room(ROOM))
            await bulk_join_at(redis.url, ROOM, ahead)
            hello_url, wr_url = f"http://127.0.0.1:{hello_port}", f"http://127.0.0.1:{wr_port}"
            await _wait_ready(f"{hello_url}/hello", hello.process)
            await _wait_ready(f"{wr_url}/healthz", room.process)
            base = f"{wr_url}/api/rooms/{ROOM}"
            tokens: list[dict[str, str]] = []
            joiner = RawClient(timeout_s=120)
            try:
                for _ in range(CONNECTIONS):
                    joined = (await joiner.post(f"{base}/join", json_body={})).json()
                    tokens.append({"Authorization": f"Bearer {joined['queue_token']}"})
            finally:
                joiner.close()
            plans: dict[str, tuple[Counted, Request]] = {
                "hello": (hello, lambda c, i: c.get(f"{hello_url}/hello")),
                "pipelined": (hello, lambda c, i: c.get(f"{hello_url}/evalsha_pipelined")),
                "healthz": (room, lambda c, i: c.get(f"{wr_url}/healthz")),
                "status": (room, lambda c, i: c.get(f"{base}/status", headers=tokens[i])),
                "join": (room, lambda c, i: c.post(f"{base}/join", json_body={})),
            }
            return {kind: await _per_request(*plans[kind], requests) for kind in kinds}
        finally:
            for server in servers:
                server.stop()
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("kinds", nargs="*", metavar="KIND",
                        help=f"what to count (default: hello pipelined status join); any of {', '.join(KINDS)}")
    parser.add_argument("--requests", type=int, default=1600, help="counted requests per kind (default 1600)")
    parser.add_argument("--ahead", type=int, default=10_000, help="visitors already waiting in the room")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    if not 32 <= args.requests <= 1_000_000 or not 0 <= args.ahead <= 1_000_000:
        parser.error("--requests must be in 32..1000000 and --ahead in 0..1000000")
    kinds = list(dict.fromkeys(args.kinds or ["hello", "pipelined", "status", "join"]))
    counts = asyncio.run(measure(kinds, args.requests, args.ahead))
    base = counts.get("hello")
    print("| request | instructions per request | vs hello world |")
    print("|---|---|---|")
    for kind, count in counts.items():
        ratio = f"{count / base:.2f}" if base else "-"
        print(f"| {kind} | {count / 1000:,.1f} k | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
