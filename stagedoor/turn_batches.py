"""Calls of one event-loop turn sent per key as one script call: what
``RedisCalls.batch_per_turn`` (stagedoor/redis_calls.py) returns. The waiting room's per-visitor
calls, joins and status polls, are batched this way per room.

In a flash crowd every process answers about ten joins or polls per loop turn, and each one
paid a whole script call: the room's config read, its state, a PEXPIRE, Redis's fixed cost of
an EVALSHA, the client's packing. Batched, those are paid once per room and turn:
lua/join_many.lua places N new visitors with one HINCRBY, one ZADD and one BITFIELD, and
lua/status_many.lua answers N polls with one config and state read. Each script gives every
visitor what its one-visitor script (join_queue.lua, get_queue_status.lua) would have given
them one after another, so batching changes nothing a fan can see; the tests check that.

Each call gets its own future, resolved with its own row of the reply. A failed call (Redis
down, a reply of the wrong shape) fails every call of the batch with the same exception; a
caller that gave up (client gone) is skipped, and what it asked for still happens, as with an
unbatched call already on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from redis import exceptions as rx

from stagedoor.lua import ScriptArg

MAX_BATCH = 128  # calls per script call at most: bounds a script's run time (well under 1 ms)

# (batch key, now_ms, the calls' arguments one after another) -> the script's list of rows
SendBatch = Callable[[Any, int, list[ScriptArg]], Awaitable[Any]]


class _Batch:
    __slots__ = ("args", "futures", "now_ms")

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.args: list[ScriptArg] = []
        self.futures: list[asyncio.Future[Any]] = []


class TurnBatches:
    """``submit`` queues one call; once per loop turn each key's (room's) queued calls leave as
    one ``send``, then ``after_send`` runs (the pipelining client's flush: the calls are written
    in this turn, not the next). A batch is timed by its latest call: Redis runs it later still."""

    def __init__(self, send: SendBatch, after_send: Callable[[], None] | None = None,
                 max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._send = send
        self._after_send = after_send
        self.max_batch = max_batch
        self._pending: dict[Hashable, _Batch] = {}
        self._scheduled = False

    def submit(self, key: Hashable, now_ms: int, *args: ScriptArg) -> asyncio.Future[Any]:
        """The future of this call's row of the reply."""
        batch = self._pending.get(key)
        if batch is None:
            batch = self._pending[key] = _Batch(now_ms)
        elif now_ms > batch.now_ms:
            batch.now_ms = now_ms
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        batch.futures.append(future)
        batch.args += args
        if len(batch.futures) >= self.max_batch:
            del self._pending[key]
            self._dispatch(key, batch)
            self._flush_writes()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for key, batch in pending.items():
            self._dispatch(key, batch)
        if pending:
            self._flush_writes()

    def _flush_writes(self) -> None:
        if self._after_send is not None:
            self._after_send()

    def _dispatch(self, key: Hashable, batch: _Batch) -> None:
        try:
            sent = asyncio.ensure_future(self._send(key, batch.now_ms, batch.args))
        except Exception as exc:  # e.g. the connection refused the call outright
            _fail(batch.futures, exc)
            return
        futures = batch.futures
        sent.add_done_callback(lambda done: _settle(futures, done))


def _settle(futures: list[asyncio.Future[Any]], done: asyncio.Future[Any]) -> None:
    if done.cancelled():
        _fail(futures, rx.ConnectionError("the batched call was cancelled"))
        return
    exc = done.exception()
    if exc is not None:
        _fail(futures, exc)
        return
    rows = done.result()
    if not isinstance(rows, list) or len(rows) != len(futures):
        count = len(rows) if isinstance(rows, list) else type(rows).__name__
        _fail(futures, RuntimeError(f"a batched script answered {count} rows for {len(futures)} calls"))
        return
    for future, row in zip(futures, rows, strict=True):
        if not future.done():
            future.set_result(row)


def _fail(futures: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)
