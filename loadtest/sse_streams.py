"""What open queue pages cost: server and Redis CPU per open event stream, per second.

Every fan with the queue page open holds one ``GET /api/rooms/{room}/events`` stream for as long
as they wait: at an on-sale that is every waiting fan at once, so the cost of a stream doing
nothing is what decides how many fans one waiting-room process can hold.

It starts a throwaway redis-server and one waiting-room process (rate limits off), creates a
room with ``--ahead`` visitors already waiting, joins ``--streams`` visitors over HTTP, opens
one event stream for each (raw sockets, the bytes read and dropped), waits for the streams to
settle, then reads the server's and Redis's CPU time (/proc) over ``--seconds``.

    .venv/bin/python -m loadtest.sse_streams --streams 2000 --room paused
    .venv/bin/python -m loadtest.sse_streams --streams 2000 --room open --ahead 0

Rooms: ``paused`` (the streams only keep watch) or ``open`` (selling at a configured 1
admission a second, but no admission controller runs, so positions hold: each stream's ETA is
its position over that rate, far back behind ``--ahead`` waiting visitors as most fans in a crowd
are, or at the front with ``--ahead 0``). Loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from loadtest.instructions import _wait_ready
from loadtest.limits import stop_process
from loadtest.rawhttp import RawClient
from loadtest.scenarios._waitingroom import bulk_join_at, create_room, lone_waiting_room_env, lone_waiting_room_stores
from rooms.store import Room
from stagedoor.embedded import free_port

ROOM = "sse-bench"
SETTLE_S = 3.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def room_config(kind: str) -> Room:
    return Room(room=ROOM, event_id=None, mode="fifo", opens_at_ms=0, starts_at_ms=0, closes_at_ms=0,
                rate_per_s=1.0, max_active=1_000_000, session_ttl_s=600, abandon_after_s=0, pow_difficulty=0,
                shop_url="/", paused=kind == "paused")


def start_waiting_room(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "stagedoor.cli", "serve", "waitingroom", "--processes", "1"],
                            env=env, stdout=subprocess.DEVNULL)


async def _open_stream(port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/rooms/{ROOM}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode())
    return reader, writer


async def _drain(reader: asyncio.StreamReader, received: list[int]) -> None:
    while chunk := await reader.read(65536):
        received[0] += len(chunk)


async def measure(streams: int, seconds: float, kind: str, ahead: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="stagedoor-sse-") as tmp:
        work = Path(tmp)
        redis, keys_dir = lone_waiting_room_stores(work)
        port = free_port()
        env = lone_waiting_room_env(redis.url, keys_dir, port,
                                    STAGEDOOR_WAITINGROOM_SSE_MAX_S=str(int(seconds + 120)))
        server = start_waiting_room(env)
        opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            await create_room(redis.url, room_config(kind))
            if ahead:
                await bulk_join_at(redis.url, ROOM, ahead)
            base = f"http://127.0.0.1:{port}"
            await _wait_ready(f"{base}/healthz", server)
            joiner = RawClient(timeout_s=30)
            try:
                tokens = [(await joiner.post(f"{base}/api/rooms/{ROOM}/join", json_body={})).json()["queue_token"]
                          for _ in range(streams)]
            finally:
                joiner.close()
            received = [0]
            for token in tokens:
                opened.append(await _open_stream(port, token))
            tasks = [asyncio.ensure_future(_drain(reader, received)) for reader, _ in opened]
            await asyncio.sleep(SETTLE_S)
            redis_pid = redis.process.pid if redis.process else 0
            s0, r0, t0, b0 = cpu_seconds(server.pid), cpu_seconds(redis_pid), time.monotonic(), received[0]
            await asyncio.sleep(seconds)
            s1, r1, t1, b1 = cpu_seconds(server.pid), cpu_seconds(redis_pid), time.monotonic(), received[0]
            span = t1 - t0
            return {"streams": streams, "seconds": span, "server_cores": (s1 - s0) / span,
                    "redis_cores": (r1 - r0) / span, "server_us_per_stream_s": (s1 - s0) / span / streams * 1e6,
                    "redis_us_per_stream_s": (r1 - r0) / span / streams * 1e6,
                    "bytes_per_stream_s": (b1 - b0) / span / streams, "bytes_per_stream_at_start": b0 / streams}
        finally:
            for task in tasks:
                task.cancel()
            for _, writer in opened:
                writer.close()
            stop_process(server, timeout_s=15)
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.sse_streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000, help="open event streams (default 2000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window (default 10)")
    parser.add_argument("--room", choices=("paused", "open"), default="paused")
    parser.add_argument("--ahead", type=int, default=10_000, help="visitors waiting ahead of the streams' own")
    args = parser.parse_args(argv)
    if not 1 <= args.streams <= 20_000 or not 1 <= args.seconds <= 120 or not 0 <= args.ahead <= 1_000_000:
        parser.error("--streams must be in 1..20000, --seconds in 1..120, --ahead in 0..1000000")
    r = asyncio.run(measure(args.streams, args.seconds, args.room, args.ahead))
    print(f"{r['streams']:,.0f} open streams ({args.room} room, {args.ahead:,} waiting ahead), {r['seconds']:.1f} s: "
          f"server {r['server_cores']:.3f} cores = {r['server_us_per_stream_s']:.1f} us per stream-second; "
          f"Redis {r['redis_cores']:.3f} cores = {r['redis_us_per_stream_s']:.1f} us per stream-second; "
          f"{r['bytes_per_stream_s']:.1f} B sent per stream-second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
