"""The one way a store calls Redis: a :class:`RedisCalls`, built once per app from the settings
(``app[CALLS]``, stagedoor/web.py) and handed to each store.

::

    reply = await calls.script("hold_seats", keys, args)             # a lua/*.lua script, by SHA
    value = await calls.command("GET", key)                          # one command
    claimed, current = await calls.commands(("SET", k, v, "NX", "EX", 60), ("GET", k))  # in order
    joins = calls.batch_per_turn(send)    # one script call per key (room) and event-loop turn
    row = await joins.submit(room, now_ms, *args)

``script``, ``command`` and ``commands`` are for short replies, and every one of them shares the
process's round trips with the calls of the other requests of the same loop turn. Underneath,
by configuration:

- **pipelined** (the default; stagedoor/redis_pipeline.py): one connection per process, the
  calls of a loop turn written at once, replies matched in order;
- **batched** (stagedoor/script_batcher.py): the calls of a loop turn sent as one redis-py
  pipeline; on a Redis Cluster (``STAGEDOOR_REDIS_CLUSTER``: the cluster client routes each call
  to its slot's master), over TLS (``rediss://``), with ``STAGEDOOR_REDIS_PIPELINING=false``,
  and for stores built outside an app (:meth:`RedisCalls.batched`: tools and tests).

Either way a script missing after a Redis restart (NOSCRIPT) is loaded again and retried, each
call gets its own reply or its own redis-py exception, and nothing is a transaction: each script
is atomic on its own. ``batch_per_turn`` goes further for calls of one kind that arrive together
(the waiting room's joins and status polls): one script call per key and turn carries them all
(stagedoor/turn_batches.py); use it where a script can answer N callers at once for the price of
about one.

``calls.redis`` is the pooled redis-py client, for what is not a short reply: a long one (a seat
map's HGETALL would hold up every reply queued behind it on the one connection), SCAN, bulk
loads through a pipeline of their own. docs/redis-calls.md says when to use which, with the
measurements behind it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis

from stagedoor.lua import LuaScripts, ScriptArg
from stagedoor.redis_pipeline import PipelinedRedis
from stagedoor.script_batcher import ScriptBatcher
from stagedoor.settings import Settings
from stagedoor.turn_batches import MAX_BATCH as MAX_TURN_BATCH
from stagedoor.turn_batches import SendBatch, TurnBatches

__all__ = ["RedisCalls", "ScriptArg", "TurnBatches"]


class ScriptCall(Protocol):
    def __call__(self, name: str, keys: Sequence[Any], args: Sequence[Any] = ...) -> Awaitable[Any]: ...


class CommandCall(Protocol):
    def __call__(self, *args: Any) -> Awaitable[Any]: ...


class CommandsCall(Protocol):
    def __call__(self, *commands: Sequence[Any]) -> Awaitable[list[Any]]: ...


class RedisCalls:
    """A store's Redis (see the module docstring).

    ``script(name, keys, args=())``: EVALSHA of lua/<name>.lua; a tuple of ``keys`` that repeats
    call after call (a room's keys) lets the pipelined path pack the command's head once.
    ``command(*args)``: one command, e.g. ``"SET", key, value, "EX", 60``.
    ``commands(*commands)``: several commands sent back to back, replies in order (a SET NX then a
    GET of the same key see each other); the first error is raised once all have answered.

    The three are the underlying path's own functions, not wrappers: the hot paths await their
    replies with no frame of ours in between.
    """

    script: ScriptCall
    command: CommandCall
    commands: CommandsCall

    def __init__(self, path: PipelinedRedis | ScriptBatcher) -> None:
        self._path = path
        self.scripts: LuaScripts = path.scripts
        self.redis: Redis = path.redis if isinstance(path, ScriptBatcher) else path.scripts.redis
        self.script = path.call
        self.command = path.command
        self.commands = path.commands
        # the pipelined connection writes a turn's batches in that turn, not at the next
        self._after_turn = path.flush if isinstance(path, PipelinedRedis) else None

    @classmethod
    def from_settings(cls, settings: Settings, client: Redis, scripts: LuaScripts, *,
                      on_event: Callable[[str], None] | None = None) -> RedisCalls:
        """Pipelined on one connection, or batched through ``client``'s pipelines on a Redis
        Cluster, over TLS, or with pipelining off. ``on_event(name)`` hears the pipelined
        connection's "connected", "connect_failed", "lost" and "reply_timeout"."""
        url = settings.redis_url or ""
        if settings.redis_pipelining and not settings.redis_cluster and not url.startswith("rediss:"):
            return cls(PipelinedRedis(url, scripts, connect_timeout_s=settings.dependency_timeout_s,
                                      reply_timeout_s=max(5.0, settings.dependency_timeout_s * 5),
                                      on_event=on_event))
        return cls(ScriptBatcher(client, scripts))

    @classmethod
    def batched(cls, client: Redis, scripts: LuaScripts, *, max_batch: int | None = None) -> RedisCalls:
        """Calls batched through ``client``'s pipelines (a cluster client routes them by slot):
        for a store built outside an app, on a client it does not own."""
        return cls(ScriptBatcher(client, scripts) if max_batch is None else ScriptBatcher(client, scripts, max_batch))

    @property
    def pipelined(self) -> bool:
        """True when the calls are pipelined on one connection, False when batched in pipelines."""
        return isinstance(self._path, PipelinedRedis)

    def batch_per_turn(self, send: SendBatch, *, max_batch: int = MAX_TURN_BATCH) -> TurnBatches:
        """Calls of one kind made in the same event-loop turn, sent per key as one call.

        ``submit(key, now_ms, *args)`` queues a call and returns the future of its row. Once per
        loop turn (or when a key has ``max_batch`` calls) each key's calls leave as one
        ``send(key, now_ms, args)``, which makes one ``self.script`` call (a script taking N
        callers' arguments one after another and answering a list of N rows); ``now_ms`` is the
        latest of the batch's. A failed send fails every call of its batch."""
        return TurnBatches(send, self._after_turn, max_batch)

    async def aclose(self) -> None:
        """Close the pipelined connection (a batched path borrows ``redis``, closed by its owner)."""
        await self._path.aclose()
