"""Flow control of stagedoor/hot_http/ over a real socket: a client that pipelines requests and
never reads the answers does not grow the server's memory. The server runs in a process of its
own (as in production, on uvloop) so its resident memory can be read (psutil) while one client
tries to push 50 MiB of requests at it; another client is answered meanwhile."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from stagedoor.settings import ROOT_DIR

SERVER = r'''
import asyncio
import sys

from aiohttp import web

from stagedoor.hot_http import HOT_ROUTES, HotResponse, HotRoute, HotRoutes, make_site

ANSWER = b'{"position": 1, "pad": "' + b"p" * 200 + b'"}'


async def hot(request):
    return HotResponse(ANSWER)


async def general(request):
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def main(way):
    app = web.Application()
    app.router.add_get("/api/rooms/{room}/status", general)
    app.router.add_post("/api/rooms/{room}/join", general)
    app[HOT_ROUTES] = HotRoutes([HotRoute("GET", "/api/rooms/{room}/status", hot)], 1024)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = make_site(runner, "127.0.0.1", 0, hot=way != "off")
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


try:
    import uvloop
except ImportError:
    asyncio.run(main(sys.argv[1]))
else:
    uvloop.run(main(sys.argv[1]))
'''

STATUS = b"GET /api/rooms/r1/status HTTP/1.1\r\nHost: h\r\n\r\n"
FLOOD_BYTES = 50 * 1024 * 1024
FIRST = {  # what the flooding connection starts with, then STATUS again and again (or its passed form)
    "hot": b"",
    "passed": b"",
    "handed_off": (b"POST /api/rooms/r1/join HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"2\r\n{}\r\n0\r\n\r\n"),
    "off": b"",
}


@pytest.fixture
def server() -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start(way: str) -> tuple[psutil.Process, int]:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, way], cwd=ROOT_DIR, stdout=subprocess.PIPE)
        started.append(proc)
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        return psutil.Process(proc.pid), port

    yield start
    for proc in started:
        proc.kill()
        proc.wait(10)


async def _answered(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return head.split(b"\r\n", 1)[0]
    finally:
        writer.close()


@pytest.mark.parametrize("way", list(FIRST))
async def test_a_client_that_pipelines_and_never_reads_does_not_grow_the_servers_memory(
        server: object, way: str) -> None:
    process, port = server(way)  # type: ignore[operator]
    one = STATUS.replace(b"status", b"status?passed=1") if way == "passed" else STATUS
    for _ in range(20):  # warm up: imports, caches, the first answers
        assert await _answered(port, one) == b"HTTP/1.1 200 OK"
    before = process.memory_info().rss
    peak = before
    chunk = one * (1024 * 1024 // len(one))
    _, writer = await asyncio.open_connection("127.0.0.1", port)  # never read
    sent = 0
    try:
        writer.write(FIRST[way])
        while sent < FLOOD_BYTES:
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except TimeoutError:
                break  # the server stopped reading: the kernel's buffers are full
            sent += len(chunk)
            peak = max(peak, process.memory_info().rss)
        for _ in range(10):
            await asyncio.sleep(0.1)
            peak = max(peak, process.memory_info().rss)
        assert await _answered(port, STATUS) == b"HTTP/1.1 200 OK"  # others are still served meanwhile
    finally:
        writer.transport.abort()
    growth_mib = (peak - before) / 2**20
    assert sent < FLOOD_BYTES, "the server read everything: reading was never paused"
    assert growth_mib < 12, f"{way}: resident memory grew {growth_mib:.1f} MiB while {sent / 2**20:.0f} MiB were sent"
