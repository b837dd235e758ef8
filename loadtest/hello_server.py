"""The bare stack, for the raw limits: aiohttp + uvloop with nothing of ours in the way.

    GET /hello     a plain-text "ok" (the hello-world handler)
    GET /evalsha   one EVALSHA of a join-like script (INCR + ZADD NX + ZRANK) through redis.asyncio
                   with hiredis, no middleware, no validation
    GET /evalsha_batched the same EVALSHA, but concurrent requests of one event-loop tick share one
                         pipelined round trip (what a batching Redis client gains)
    GET /evalsha_pipelined the same EVALSHA through stagedoor.redis_pipeline.PipelinedRedis, the
                           client of our hot paths (one connection, writes coalesced per loop turn,
                           hiredis): the ceiling for a handler that makes one Redis call
    POST /purchase       the purchase transaction through an asyncpg pool (stock settings, 20 per
                         process): BEGIN, INSERT order, INSERT 2 tickets, COMMIT
    POST /purchase_cte   the same as one CTE statement
    POST /purchase_cte_charged?charge_ms=300  the CTE after ``charge_ms`` of waiting (a gateway's
                         answer), holding no connection meanwhile: the best a process does with
                         that many purchases in flight
                   (tables of loadtest.limits.PG_SCHEMA; needs --database-url)

    python -m loadtest.hello_server --port 8090 --processes 2 [--redis-url URL] [--database-url URL]

With ``--processes N`` the first process starts N-1 copies of itself on the same port
(SO_REUSEPORT) and stops them when it is stopped (SIGTERM / SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

# The same shape as the waiting room's join: a sequence, a queue with NX, the rank.
JOIN_LIKE_LUA = """
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], 'NX', seq, ARGV[1])
return redis.call('ZRANK', KEYS[2], ARGV[1])
"""
JOIN_KEYS = ("bench:{room:hello}:seq", "bench:{room:hello}:queue")

ORDER_SQL = ("INSERT INTO bench_orders (event_id, user_id, total_minor, currency, status) "
             "VALUES ($1, $2, 9000, 'EUR', 'confirmed') RETURNING id")
TICKETS_SQL = ("INSERT INTO bench_tickets (order_id, event_id, seat_id, code) "
               "SELECT $1, $2, nextval('bench_seat_seq'), md5(random()::text) FROM generate_series(1, 2)")
PURCHASE_CTE_SQL = (
    "WITH o AS (INSERT INTO bench_orders (event_id, user_id, total_minor, currency, status) "
    "VALUES ($1, $2, 9000, 'EUR', 'confirmed') RETURNING id) "
    "INSERT INTO bench_tickets (order_id, event_id, seat_id, code) "
    "SELECT o.id, $1, nextval('bench_seat_seq'), md5(random()::text) FROM o, generate_series(1, 2)")
POOL_SIZE = 20

REDIS = web.AppKey("redis", object)
DB = web.AppKey("db", object)
BATCHER = web.AppKey("batcher", object)
PIPELINED = web.AppKey("pipelined", object)
SHA = web.AppKey("sha", str)
COUNTER = web.AppKey("counter", list)


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def evalsha(request: web.Request) -> web.Response:
    app = request.app
    counter = app[COUNTER]
    counter[0] += 1
    visitor = f"{counter[1]}:{counter[0]}"
    rank = await app[REDIS].evalsha(app[SHA], 2, *JOIN_KEYS, visitor)  # type: ignore[attr-defined]
    return web.Response(text=str(rank))


async def purchase(request: web.Request) -> web.Response:
    counter = request.app[COUNTER]
    counter[0] += 1
    event_id = counter[0] % 100 + 1
    async with request.app[DB].acquire() as conn, conn.transaction():  # type: ignore[attr-defined]
        order_id = await conn.fetchval(ORDER_SQL, event_id, counter[0])
        await conn.execute(TICKETS_SQL, order_id, event_id)
    return web.Response(text=str(order_id), status=201)


async def purchase_cte(request: web.Request) -> web.Response:
    counter = request.app[COUNTER]
    counter[0] += 1
    await request.app[DB].execute(PURCHASE_CTE_SQL, counter[0] % 100 + 1, counter[0])  # type: ignore[attr-defined]
    return web.Response(text="ok", status=201)


async def purchase_cte_charged(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("charge_ms", "0")) / 1000)
    return await purchase_cte(request)


class Batcher:
    """EVALSHA calls made in the same loop tick go to Redis as one pipeline (no MULTI)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def evalsha(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self.pending:
            loop.call_soon(self._flush)
        self.pending.append((args, future))
        return await future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        task = asyncio.ensure_future(self._send(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for args, _ in batch:
            pipe.evalsha(*args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


async def evalsha_batched(request: web.Request) -> web.Response:
    app = request.app
    counter = app[COUNTER]
    counter[0] += 1
    rank = await app[BATCHER].evalsha(app[SHA], 2, *JOIN_KEYS, f"{counter[1]}:b{counter[0]}")
    return web.Response(text=str(rank))


async def evalsha_pipelined(request: web.Request) -> web.Response:
    app = request.app
    counter = app[COUNTER]
    counter[0] += 1
    rank = await app[PIPELINED].command(  # type: ignore[attr-defined]
        "EVALSHA", app[SHA], 2, *JOIN_KEYS, f"{counter[1]}:p{counter[0]}")
    return web.Response(text=str(rank))


def create_app(redis_url: str | None, process_tag: str, database_url: str | None = None) -> web.Application:
    app = web.Application()
    app[COUNTER] = [0, process_tag]
    app.router.add_get("/hello", hello)
    if redis_url:
        async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
            import redis.asyncio as redis_asyncio

            client = redis_asyncio.Redis.from_url(redis_url, max_connections=256)
            app[REDIS] = client
            app[BATCHER] = Batcher(client)
            app[SHA] = await client.script_load(JOIN_LIKE_LUA)
            from stagedoor.lua import LuaScripts
            from stagedoor.redis_pipeline import PipelinedRedis

            pipelined = PipelinedRedis(redis_url, LuaScripts(client))
            app[PIPELINED] = pipelined
            yield
            await pipelined.aclose()
            await client.aclose()

        app.cleanup_ctx.append(redis_ctx)
        app.router.add_get("/evalsha", evalsha)
        app.router.add_get("/evalsha_batched", evalsha_batched)
        app.router.add_get("/evalsha_pipelined", evalsha_pipelined)
    if database_url:
        async def db_ctx(app: web.Application) -> AsyncIterator[None]:
            import asyncpg

            pool = await asyncpg.create_pool(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE)
            app[DB] = pool
            yield
            await pool.close()

        app.cleanup_ctx.append(db_ctx)
        app.router.add_post("/purchase", purchase)
        app.router.add_post("/purchase_cte", purchase_cte)
        app.router.add_post("/purchase_cte_charged", purchase_cte_charged)
    return app


async def _serve(port: int, redis_url: str | None, process_tag: str, database_url: str | None) -> None:
    runner = web.AppRunner(create_app(redis_url, process_tag, database_url), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=4096).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.hello_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1, choices=range(1, 17), metavar="1..16")
    parser.add_argument("--redis-url")
    parser.add_argument("--database-url")
    parser.add_argument("--tag", default="p0", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    children = []
    for i in range(1, args.processes):
        cmd = [sys.executable, "-m", "loadtest.hello_server", "--port", str(args.port), "--tag", f"p{i}"]
        if args.redis_url:
            cmd += ["--redis-url", args.redis_url]
        if args.database_url:
            cmd += ["--database-url", args.database_url]
        children.append(subprocess.Popen(cmd))
    try:
        import uvloop

        uvloop.run(_serve(args.port, args.redis_url, args.tag, args.database_url))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
