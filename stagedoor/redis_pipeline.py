"""The pipelined path under :class:`stagedoor.redis_calls.RedisCalls`: every short call of a
process (join, status, rate limits, holds, purchases...) on one connection.

redis-py sends a command on a pooled connection and waits for its reply before the connection
serves anyone else; on 2 cores most of a hot request's CPU went into that client
(docs/redis-calls.md has the measurements). This client pipelines concurrent requests' calls on
one connection instead:

- one TCP (or unix socket) connection per process, opened on first use and again after a loss;
- every command is packed by hiredis (redis-py's own C extension) and queued at once; the
  commands of one event-loop turn leave in one write;
- Redis answers in order (RESP), so replies resolve the callers' futures in order, parsed by
  hiredis; an error reply becomes the same redis-py exception the stock client raises;
- a NOSCRIPT (Redis restarted, ``SCRIPT FLUSH``) is retried through the loader
  (stagedoor/lua.py), which loads the script again;
- the connection dropping fails every call in flight with ``redis.ConnectionError``; no reply
  for ``reply_timeout_s`` while calls wait aborts the connection with ``redis.TimeoutError``;
  a failed connect is remembered for ``RECONNECT_BACKOFF_S`` so an outage fails calls fast
  instead of making each of them wait out a connect timeout.

Its ``call``, ``command`` and ``commands`` are those of the batched path,
:class:`stagedoor.script_batcher.ScriptBatcher`, which is used instead on a Redis Cluster (the
cluster client routes by slot), for TLS URLs, and with ``STAGEDOOR_REDIS_PIPELINING=false``.
Only short replies belong here: a large one (a 50 k seat map) would hold up every reply behind
it, so those keep using the pooled client (``RedisCalls.redis``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis import exceptions as rx
from redis.connection import UnixDomainSocketConnection, parse_url

from stagedoor.lua import LuaScripts
from stagedoor.script_batcher import settle

logger = logging.getLogger(__name__)

RECONNECT_BACKOFF_S = 0.25
HEAD_CACHE_SIZE = 4096  # packed EVALSHA heads kept (script name x key set), cleared when full

_ERRORS: dict[str, type[rx.RedisError]] = {
    "NOSCRIPT": rx.NoScriptError,
    "LOADING": rx.BusyLoadingError,
    "READONLY": rx.ReadOnlyError,
    "OOM": rx.OutOfMemoryError,
    "NOPERM": rx.NoPermissionError,
    "MASTERDOWN": rx.MasterDownError,
}


def reply_error(reply: hiredis.ReplyError) -> Exception:
    """The redis-py exception for an error reply (what redis.asyncio would raise)."""
    message = str(reply)
    code, _, rest = message.partition(" ")
    if code == "ERR":
        return rx.ResponseError(rest)
    if code in ("NOAUTH", "WRONGPASS"):
        return rx.AuthenticationError(message)
    return _ERRORS.get(code, rx.ResponseError)(message)


Retry = Callable[[], Awaitable[Any]]
OnEvent = Callable[[str], None]


class _Connection(asyncio.Protocol):
    """One connection: a queue of futures waiting for replies, in the order the commands left."""

    def __init__(self, reply_timeout_s: float, on_event: OnEvent | None = None) -> None:
        self._on_event = on_event
        self.reader = hiredis.Reader()
        # (future, retry): ``retry`` re-runs a script call through LuaScripts when Redis answers NOSCRIPT
        self.pending: collections.deque[tuple[asyncio.Future[Any], Retry | None]] = collections.deque()
        self._retries: set[asyncio.Task[None]] = set()
        self.transport: Any = None  # an asyncio or uvloop transport (uvloop's do not subclass asyncio's)
        self.closed = False
        self._out: list[bytes] = []
        self._reply_timeout_s = reply_timeout_s
        self._progress = time.monotonic()
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._progress = time.monotonic()
        reader, pending = self.reader, self.pending
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                future, retry = pending.popleft()
                if future.done():  # the caller was cancelled; the reply still had to be read
                    continue
                if not isinstance(reply, hiredis.ReplyError):
                    future.set_result(reply)
                elif retry is not None and str(reply).startswith("NOSCRIPT"):
                    task = self._loop.create_task(settle(future, retry()))
                    self._retries.add(task)
                    task.add_done_callback(self._retries.discard)
                else:
                    future.set_exception(reply_error(reply))
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self._fail(rx.ConnectionError(f"Redis protocol error: {exc}"), "lost")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            logger.warning("redis_connection_lost", extra={"waiting": len(self.pending)})
        self._fail(rx.ConnectionError("Redis connection lost" + (f": {exc}" if exc else "")), "lost")

    # -- sending
    def send(self, packed: bytes, retry: Retry | None = None) -> asyncio.Future[Any]:
        if self.closed:
            raise rx.ConnectionError("Redis connection closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        if not self.pending:
            self._progress = time.monotonic()  # the reply clock starts with the first call waiting
            if self._watchdog is None:
                self._watchdog = self._loop.call_later(self._reply_timeout_s, self._check_progress)
        self.pending.append((future, retry))
        if not self._out:
            self._loop.call_soon(self.flush)
        self._out.append(packed)
        return future

    def flush(self) -> None:
        """Write what was queued (at the end of the loop turn that queued it, or at once)."""
        out, self._out = self._out, []
        if out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(out))

    def _check_progress(self) -> None:
        self._watchdog = None
        if self.closed or not self.pending:
            return
        idle = time.monotonic() - self._progress
        if idle >= self._reply_timeout_s:
            logger.warning("redis_reply_timeout", extra={"waiting": len(self.pending), "idle_s": round(idle, 3)})
            self._fail(rx.TimeoutError(f"no reply from Redis for {idle:.1f} s"), "reply_timeout")
            return
        self._watchdog = self._loop.call_later(self._reply_timeout_s - idle, self._check_progress)

    def _fail(self, exc: Exception, event: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        if event is not None and self._on_event is not None:
            self._on_event(event)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.transport is not None:
            self.transport.abort()
        pending, self.pending = self.pending, collections.deque()
        self._out = []
        for future, _ in pending:
            if not future.done():
                future.set_exception(exc)

    def close(self) -> None:
        self._fail(rx.ConnectionError("Redis connection closed by the client"))


class PipelinedRedis:
    """The process's hot-path Redis calls, pipelined on one connection (see the module docstring)."""

    def __init__(self, url: str, scripts: LuaScripts, *, connect_timeout_s: float = 1.0,
                 reply_timeout_s: float = 5.0, on_event: OnEvent | None = None,
                 reconnect_backoff_s: float = RECONNECT_BACKOFF_S) -> None:
        """``on_event(name)`` hears "connected", "connect_failed", "lost" and "reply_timeout"
        (the services count them: ``stagedoor_redis_pipeline_events_total``)."""
        self._on_event = on_event
        params = parse_url(url)
        if params.get("connection_class") not in (None, UnixDomainSocketConnection):
            raise ValueError("PipelinedRedis speaks plain TCP or a unix socket (no TLS)")
        self._params = params
        self.scripts = scripts
        self.connect_timeout_s = connect_timeout_s
        self.reply_timeout_s = reply_timeout_s
        self.reconnect_backoff_s = reconnect_backoff_s
        self._conn: _Connection | None = None
        self._heads: dict[tuple[str, tuple[Any, ...]], bytes] = {}
        self._lock = asyncio.Lock()
        self._failed: tuple[float, Exception] | None = None

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed:
                return conn
            if self._failed is not None and time.monotonic() - self._failed[0] < self.reconnect_backoff_s:
                raise self._failed[1]
            try:
                conn = await self._connect()
            except Exception as exc:
                error = exc if isinstance(exc, rx.RedisError) else rx.ConnectionError(f"Redis connect failed: {exc}")
                self._failed = (time.monotonic(), error)
                self._event("connect_failed")
                raise error from exc
            self._failed = None
            self._conn = conn
            self._event("connected")
            return conn

    def _event(self, name: str) -> None:
        if self._on_event is not None:
            self._on_event(name)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        p = self._params
        reply_timeout, on_event = self.reply_timeout_s, self._on_event
        async with asyncio.timeout(self.connect_timeout_s):
            if "path" in p:
                _, conn = await loop.create_unix_connection(lambda: _Connection(reply_timeout, on_event),
                                                            p["path"])
            else:
                _, conn = await loop.create_connection(lambda: _Connection(reply_timeout, on_event),
                                                       p.get("host", "localhost"), p.get("port", 6379))
            handshake: list[tuple[Any, ...]] = []
            if p.get("password") is not None:
                user = p.get("username")
                handshake.append(("AUTH", user, p["password"]) if user else ("AUTH", p["password"]))
            if p.get("db"):
                handshake.append(("SELECT", p["db"]))
            try:
                for args in handshake:
                    await conn.send(hiredis.pack_command(args))
            except BaseException:
                conn.close()
                raise
        return conn

    def command(self, *args: Any) -> Awaitable[Any]:
        """One command, e.g. ``"SET", key, value, "EX", 60``; awaits its reply (bytes, int, list...).
        A plain function returning the reply's future: no coroutine frame on the hot path."""
        return self._send(hiredis.pack_command(args), None)

    def call(self, name: str, keys: Sequence[Any], args: Sequence[Any] = ()) -> Awaitable[Any]:
        """EVALSHA of a script loaded by ``scripts``; on NOSCRIPT it runs through ``LuaScripts.call``,
        which loads the script again.

        ``keys`` as a tuple says they repeat call after call (a room's keys): the packed head of
        the command (EVALSHA, sha, key count, keys) is then kept and only ``args`` are packed,
        which halves the packing of a join or a status poll. A list is packed whole each time."""
        if type(keys) is tuple and args:
            packed = self._pack_with_head(name, keys, args)
        else:
            packed = hiredis.pack_command(("EVALSHA", self.scripts.sha(name), len(keys), *keys, *args))
        return self._send(packed, functools.partial(self.scripts.call, name, keys, args))

    def _pack_with_head(self, name: str, keys: tuple[Any, ...], args: Sequence[Any]) -> bytes:
        head = self._heads.get((name, keys))
        if head is None:
            if len(self._heads) >= HEAD_CACHE_SIZE:
                self._heads.clear()
            whole = hiredis.pack_command(("EVALSHA", self.scripts.sha(name), len(keys), *keys))
            head = self._heads[(name, keys)] = whole[whole.index(b"\r\n") + 2:]  # without "*<count>"
        tail = hiredis.pack_command(tuple(args))
        count = 3 + len(keys) + len(args)
        return b"*%d\r\n%b%b" % (count, head, tail[tail.index(b"\r\n") + 2:])

    def _send(self, packed: bytes, retry: Retry | None) -> Awaitable[Any]:
        conn = self._conn
        if conn is None or conn.closed:
            return self._send_after_connect(packed, retry)
        return conn.send(packed, retry)

    async def _send_after_connect(self, packed: bytes, retry: Retry | None) -> Any:
        conn = await self._connection()
        return await conn.send(packed, retry)

    def flush(self) -> None:
        """Write the calls queued so far now, instead of at the next loop turn (for a batcher
        whose own flush already waited for the turn's calls)."""
        conn = self._conn
        if conn is not None and not conn.closed:
            conn.flush()

    async def commands(self, *commands: Sequence[Any]) -> list[Any]:
        """Several commands sent back to back (in order: a SET NX then a GET of the same key see
        each other). Replies in order; the first error is raised once all have answered."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
        futures = [conn.send(hiredis.pack_command(tuple(args))) for args in commands]
        replies: list[Any] = []
        error: BaseException | None = None
        for future in futures:  # every reply is awaited, so no exception is left unretrieved
            try:
                replies.append(await future)
            except rx.RedisError as exc:
                error = error or exc
        if error is not None:
            raise error
        return replies

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
