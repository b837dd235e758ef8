"""The pipelined path of the stores' Redis calls (stagedoor/redis_pipeline.py) against a real Redis:
replies reach the right caller under concurrency, errors map to redis-py's exceptions, NOSCRIPT
reloads, a lost connection fails its calls and the next call reconnects, a silent server times out;
and RedisCalls (stagedoor/redis_calls.py) picks it or the batched path by configuration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import exceptions as rx

from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_pipeline import PipelinedRedis
from stagedoor.script_batcher import ScriptBatcher
from stagedoor.settings import Settings


@pytest.fixture
async def hot(redis_url: str, redis_client: Any) -> AsyncIterator[PipelinedRedis]:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    client = PipelinedRedis(redis_url, scripts, connect_timeout_s=1.0, reply_timeout_s=2.0)
    yield client
    await client.aclose()


async def test_concurrent_calls_each_get_their_own_reply(hot: PipelinedRedis, redis_prefix: str) -> None:
    keys = [f"{redis_prefix}:k{i}" for i in range(50)]
    await hot.commands(*(("SET", key, i) for i, key in enumerate(keys)))

    async def read(i: int) -> tuple[int, Any]:
        await asyncio.sleep(0.001 * (i % 3))  # spread over several loop turns and writes
        return i, await hot.command("GET", keys[i % 50])

    results = await asyncio.gather(*(read(i) for i in range(2_000)))
    assert all(reply == str(i % 50).encode() for i, reply in results)


async def test_scripts_run_by_sha_and_reload_after_a_script_flush(hot: PipelinedRedis, redis_client: Any,
                                                                  redis_prefix: str) -> None:
    key = f"{redis_prefix}:bucket"
    # lua/rate_limit.lua: KEYS[1] bucket; ARGV now_ms, burst, period_ms, cost -> {allowed, left, wait_ms}
    first = await hot.call("rate_limit", [key], [1_000, 3, 1_000, 1])
    assert first == [1, 2, 0]
    await redis_client.script_flush()  # as after a Redis restart: every script is gone
    replies = await asyncio.gather(*(hot.call("rate_limit", [key], [1_000, 3, 1_000, 1]) for _ in range(3)))
    assert sorted(r[0] for r in replies) == [0, 1, 1]  # 2 tokens were left: every call ran exactly once
    assert await redis_client.script_exists(hot.scripts.sha("rate_limit")) == [True]


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=8),
       args=st.lists(st.one_of(st.text(max_size=60), st.integers(-2**62, 2**62),
                               st.floats(allow_nan=False, allow_infinity=False), st.binary(max_size=60)),
                     min_size=1, max_size=12))
def test_a_kept_head_packs_the_same_bytes_as_packing_it_all(keys: list[str], args: list[Any]) -> None:
    """Keys given as a tuple: the command's head is packed once and kept, the arguments each time;
    the bytes on the wire are exactly hiredis' for the whole command, also on the second call."""
    client = PipelinedRedis("redis://127.0.0.1:1/0", _FixedSha())
    whole = hiredis.pack_command(("EVALSHA", "f" * 40, len(keys), *keys, *args))
    assert client._pack_with_head("s", tuple(keys), args) == whole
    assert client._pack_with_head("s", tuple(keys), args) == whole  # from the kept head


class _FixedSha:
    def sha(self, name: str) -> str:
        return "f" * 40


async def test_a_kept_head_serves_many_calls_of_one_key_set(hot: PipelinedRedis, redis_prefix: str) -> None:
    keys = (f"{redis_prefix}:{{b}}:bucket",)
    replies = await asyncio.gather(*(hot.call("rate_limit", keys, [1_000, 100, 1_000, 1]) for _ in range(30)))
    assert sorted(r[1] for r in replies) == list(range(70, 100))  # each call took one token, in turn
    assert len(hot._heads) == 1


async def test_error_replies_raise_what_redis_py_raises_and_keep_the_others(hot: PipelinedRedis,
                                                                            redis_prefix: str) -> None:
    key = f"{redis_prefix}:list"
    await hot.command("RPUSH", key, "x")
    with pytest.raises(rx.ResponseError, match="WRONGTYPE"):
        await hot.command("INCR", key)
    with pytest.raises(rx.ResponseError, match="unknown command"):
        await hot.command("NOSUCHCOMMAND")
    with pytest.raises(rx.NoScriptError):
        await hot.command("EVALSHA", "0" * 40, 0)
    # several commands: all run in order, the first error is raised after every reply arrived
    with pytest.raises(rx.ResponseError, match="WRONGTYPE"):
        await hot.commands(("SET", f"{redis_prefix}:a", 1), ("INCR", key), ("SET", f"{redis_prefix}:b", 2))
    assert await hot.commands(("GET", f"{redis_prefix}:a"), ("GET", f"{redis_prefix}:b")) == [b"1", b"2"]


async def test_a_cancelled_caller_does_not_shift_the_replies_of_the_others(hot: PipelinedRedis,
                                                                          redis_prefix: str) -> None:
    await hot.command("SET", f"{redis_prefix}:a", "A")
    await hot.command("SET", f"{redis_prefix}:b", "B")
    slow = asyncio.ensure_future(hot.command("BLPOP", f"{redis_prefix}:empty", "0.3"))
    after = asyncio.ensure_future(hot.command("GET", f"{redis_prefix}:a"))
    await asyncio.sleep(0.05)
    slow.cancel()
    assert await after == b"A"  # the BLPOP's reply (nil, 0.3 s later) is read and dropped, in order
    assert await hot.command("GET", f"{redis_prefix}:b") == b"B"


async def test_a_lost_connection_fails_its_calls_and_the_next_call_reconnects(redis_url: str, redis_client: Any,
                                                                              redis_prefix: str) -> None:
    events: list[str] = []
    hot = PipelinedRedis(redis_url, LuaScripts(redis_client), reply_timeout_s=2.0, on_event=events.append)
    conn_id = await hot.command("CLIENT", "ID")
    in_flight = asyncio.ensure_future(hot.command("BLPOP", f"{redis_prefix}:never", "5"))
    await asyncio.sleep(0.05)
    await redis_client.execute_command("CLIENT", "KILL", "ID", conn_id)
    with pytest.raises(rx.ConnectionError):
        await asyncio.wait_for(in_flight, 2)
    assert await hot.command("PING") == b"PONG"
    assert await hot.command("CLIENT", "ID") != conn_id
    await hot.aclose()
    assert events == ["connected", "lost", "connected"]  # a close by the client itself is no event


async def test_a_server_that_stops_answering_times_out(redis_client: Any) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing: a hung peer

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events: list[str] = []
    client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", LuaScripts(redis_client), reply_timeout_s=0.3,
                            on_event=events.append)
    try:
        started = time.monotonic()
        with pytest.raises(rx.TimeoutError):
            await asyncio.gather(client.command("PING"), client.command("PING"))
        assert 0.25 < time.monotonic() - started < 2.0
        assert events == ["connected", "reply_timeout"]
    finally:
        await client.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_an_unreachable_server_fails_fast_while_backing_off(redis_client: Any) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens on that port now
    events: list[str] = []
    client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", LuaScripts(redis_client), connect_timeout_s=1.0,
                            on_event=events.append, reconnect_backoff_s=30.0)
    with pytest.raises(rx.ConnectionError):
        await client.command("PING")
    started = time.monotonic()
    results = await asyncio.gather(*(client.command("PING") for _ in range(100)), return_exceptions=True)
    assert all(isinstance(r, rx.ConnectionError) for r in results)
    assert time.monotonic() - started < 5.0  # no call waited for a connect attempt of its own
    assert events == ["connect_failed"]  # the calls within the back-off did not try again
    await client.aclose()


async def test_the_url_selects_the_database(redis_url: str, redis_client: Any, redis_prefix: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    client = PipelinedRedis(f"{base}/3", LuaScripts(redis_client))
    try:
        await client.command("SET", f"{redis_prefix}:db", "three", "EX", 60)
        assert await redis_client.get(f"{redis_prefix}:db") is None  # not in database 0
        assert await client.command("GET", f"{redis_prefix}:db") == b"three"
        await client.command("DEL", f"{redis_prefix}:db")
    finally:
        await client.aclose()


def test_it_works_on_uvloop_as_the_services_run(redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as redis_asyncio
    import uvloop

    async def main() -> list[Any]:
        stock = redis_asyncio.Redis.from_url(redis_url)
        scripts = LuaScripts(stock)
        await scripts.load_all()
        client = PipelinedRedis(redis_url, scripts, reply_timeout_s=2.0)
        try:
            key = f"{redis_prefix}:uv"
            replies = await asyncio.gather(*(client.command("INCR", key) for _ in range(100)))
            await client.command("DEL", key)
            return replies
        finally:
            await client.aclose()
            await stock.aclose()

    assert sorted(uvloop.run(main())) == list(range(1, 101))


def test_calls_are_batched_on_a_cluster_over_tls_or_when_pipelining_is_off(settings: Settings,
                                                                          redis_client: Any) -> None:
    import msgspec

    scripts = LuaScripts(redis_client)
    calls = RedisCalls.from_settings(settings, redis_client, scripts)
    assert calls.pipelined and isinstance(calls.script.__self__, PipelinedRedis)  # type: ignore[attr-defined]
    for change in ({"redis_cluster": True}, {"redis_pipelining": False}, {"redis_url": "rediss://h:6380/0"}):
        calls = RedisCalls.from_settings(msgspec.structs.replace(settings, **change), redis_client, scripts)
        assert not calls.pipelined and isinstance(calls.script.__self__, ScriptBatcher)  # type: ignore[attr-defined]
        assert calls.redis is redis_client and calls.scripts is scripts


@pytest.mark.parametrize("pipelining", [True, False])
async def test_one_api_on_either_path(make_settings: Any, redis_client: Any, redis_prefix: str,
                                      pipelining: bool) -> None:
    """script, command, commands and batch_per_turn answer alike, pipelined or batched; a
    turn's batches leave in that turn (one script call per key), each caller its own row."""
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    calls = RedisCalls.from_settings(make_settings(redis_pipelining=pipelining), redis_client, scripts)
    assert calls.pipelined is pipelining and calls.redis is redis_client
    try:
        key = f"{redis_prefix}:{{b}}:bucket"
        assert await calls.script("rate_limit", [key], [1_000, 3, 1_000, 1]) == [1, 2, 0]
        assert await calls.command("SET", f"{redis_prefix}:a", "A", "EX", 60) in (b"OK", True)
        assert await calls.commands(("SET", f"{redis_prefix}:b", "x", "NX"), ("GET", f"{redis_prefix}:b"),
                                    ("GET", f"{redis_prefix}:a")) in ([b"OK", b"x", b"A"], [True, b"x", b"A"])
        sent: list[tuple[str, int, list[Any]]] = []

        async def take(bucket: str, now_ms: int, costs: list[Any]) -> list[Any]:
            sent.append((bucket, now_ms, list(costs)))  # one call per bucket: the rows of its callers
            return [await calls.script("rate_limit", [f"{redis_prefix}:{{b}}:{bucket}"], [now_ms, 10, 1_000, c])
                    for c in costs]

        batches = calls.batch_per_turn(take)
        rows = await asyncio.gather(*(batches.submit(bucket, 1_000 + i, 1) for i, bucket in enumerate("xxyxy")))
        assert len(sent) == 2 and {b: t for b, t, _ in sent} == {"x": 1_003, "y": 1_004}  # by its latest call
        assert [r[1] for r in rows] == [9, 8, 9, 7, 8]  # tokens left: each caller its own row, in order
    finally:
        await calls.aclose()
