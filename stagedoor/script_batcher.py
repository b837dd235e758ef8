"""The batched path under :class:`stagedoor.redis_calls.RedisCalls`: concurrent calls (scripts
and plain commands) of one process in one redis-py pipeline. Used on a Redis Cluster, over TLS,
with ``STAGEDOOR_REDIS_PIPELINING=false``, and for stores built outside an app (otherwise
stagedoor/redis_pipeline.py pipelines on one connection, cheaper still);
``RedisCalls.from_settings`` picks.

On 2 cores the Python side of a Redis call costs more than Redis itself (docs/redis-calls.md: a
bare handler doing one EVALSHA 9,499 req/s, the same requests batched in pipelines 15,217). Calls
made while the event loop is busy (e.g. all the hold requests whose bytes arrived in the same loop iteration)
are queued and sent together on the next loop turn: one connection checkout, one write, one read
of N replies. Each call keeps its own result or error; a script missing after a Redis restart
(NOSCRIPT) is retried alone through LuaScripts, which reloads it. Scripts stay independent:
a pipeline is not a transaction, each EVALSHA is atomic on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from stagedoor.lua import LuaScripts

MAX_BATCH = 256


async def settle(future: asyncio.Future[Any], call: Awaitable[Any]) -> None:
    """Resolve ``future`` with what ``call`` returns or raises (unless its caller gave up)."""
    try:
        result = await call
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(result)


class ScriptBatcher:
    def __init__(self, redis: Redis, scripts: LuaScripts, max_batch: int = MAX_BATCH) -> None:
        self.redis = redis
        self.scripts = scripts
        self.max_batch = max_batch
        # (script name or None for a plain command, keys, args, future)
        self._pending: list[tuple[str | None, Sequence[Any], Sequence[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """Nothing to close: the batcher borrows the pooled client."""

    async def call(self, name: str, keys: Sequence[Any], args: Sequence[Any] = ()) -> Any:
        """EVALSHA of a loaded script, in the next batch."""
        return await self._enqueue(name, keys, args)

    async def command(self, *args: Any) -> Any:
        """A plain command (e.g. ``"SET", key, value, "EX", 60``), in the next batch. Commands
        queued by one coroutine before it awaits (``asyncio.gather``) travel in the same pipeline,
        in order."""
        return await self._enqueue(None, (), args)

    async def commands(self, *commands: Sequence[Any]) -> list[Any]:
        """Several plain commands, queued together so they travel in the same pipeline, in order
        (a SET NX then a GET of the same key see each other). Replies in order; the first error
        is raised."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        for args in commands:
            future: asyncio.Future[Any] = loop.create_future()
            self._pending.append((None, (), args, future))
            futures.append(future)
        self._schedule(loop)
        return list(await asyncio.gather(*futures))

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)

    async def _enqueue(self, name: str | None, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((name, keys, args, future))
        self._schedule(loop)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)  # owned here until done (a cancelled caller does not cancel the batch)
            task.add_done_callback(self._tasks.discard)

    def _single(self, name: str | None, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if name is None:
            return self.redis.execute_command(*args)
        return self.scripts.call(name, keys, args)

    async def _send(self, batch: list[tuple[str | None, Sequence[Any], Sequence[Any], asyncio.Future[Any]]]) -> None:
        if len(batch) == 1:
            name, keys, args, future = batch[0]
            await settle(future, self._single(name, keys, args))
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for name, keys, args, _ in batch:
                if name is None:
                    pipe.execute_command(*args)
                else:
                    pipe.execute_command("EVALSHA", self.scripts.sha(name), len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the whole pipeline failed (connection lost, cancelled)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (name, keys, args, future), reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError) and name is not None:
                await settle(future, self.scripts.call(name, keys, args))
            elif future.done():
                continue
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
