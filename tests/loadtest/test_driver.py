"""The load driver's maths (histogram, percentiles, merging) and its loopback-only rule.

No performance is asserted here: figures live in loadtest/results/, produced by `make bench`.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from loadtest.driver import (
    Histogram,
    WorkerResult,
    WorkerState,
    _loopback_connector,
    bucket_of,
    merge_results,
    run_load,
    split_requests,
)
from loadtest.rawhttp import RawClient, RawHttpError, _dechunk, build_request, parse_head
from loadtest.scenario import BenchEnv, LoadConfig, NotLoopback, check_loopback_url, is_loopback_host
from stagedoor.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_small_latencies_are_recorded_exactly() -> None:
    for value in (0, 1, 17, 999, 2047):
        assert bucket_of(value) == value


def test_large_latencies_keep_a_relative_error_under_one_in_a_thousand() -> None:
    rng = random.Random(7)
    for _ in range(10_000):
        value = rng.randrange(2048, 600_000_000)
        bucket = bucket_of(value)
        assert bucket <= value
        assert (value - bucket) / value < 1 / 1024


def test_percentiles_of_a_known_distribution() -> None:
    h = Histogram()
    for value in range(1, 1001):  # 1..1000 us, all exact buckets
        h.record_us(value)
    assert h.total == 1000
    assert h.percentile_us(50) == 500
    assert h.percentile_us(90) == 900
    assert h.percentile_us(99) == 990
    assert h.percentile_us(0) == 1
    assert h.percentile_us(100) == 1000 == h.max_us


def test_percentile_of_an_empty_histogram_is_zero_and_bad_percentiles_are_refused() -> None:
    assert Histogram().percentile_us(99) == 0
    with pytest.raises(ValueError):
        Histogram().percentile_us(101)


def test_merging_histograms_equals_recording_everything_in_one() -> None:
    rng = random.Random(3)
    samples = [int(rng.expovariate(1 / 5000)) for _ in range(20_000)]
    whole = Histogram()
    for s in samples:
        whole.record_us(s)
    parts = [Histogram(), Histogram(), Histogram()]
    for i, s in enumerate(samples):
        parts[i % 3].record_us(s)
    merged = Histogram()
    for part in parts:
        merged.merge(Histogram.from_wire(part.to_wire()))  # through the inter-process wire format
    assert merged.counts == whole.counts
    assert merged.total == whole.total == len(samples)
    assert merged.max_us == whole.max_us == max(samples)
    for p in (50, 90, 99, 99.9):
        assert merged.percentile_us(p) == whole.percentile_us(p)
    exact_p99 = sorted(samples)[int(len(samples) * 0.99) - 1]
    assert abs(merged.percentile_us(99) - exact_p99) <= exact_p99 / 1024 + 1


def test_merging_worker_results_adds_counts_and_keeps_the_longest_window() -> None:
    a = WorkerResult(requests=3, statuses={200: 2, 409: 1}, exceptions={}, window_s=9.5, issued=5)
    for v in (100, 200, 300):
        a.histogram.record_us(v)
    b = WorkerResult(requests=2, statuses={200: 1}, exceptions={"ClientOSError": 1}, window_s=10.0, issued=4)
    for v in (400, 500):
        b.histogram.record_us(v)
    config = LoadConfig(processes=2, concurrency=1)
    merged = merge_results([WorkerResult.from_wire(a.to_wire()), b], frozenset({200}), config)
    assert merged.requests == 5
    assert merged.issued == 9
    assert merged.statuses == {200: 3, 409: 1}
    assert merged.window_s == 10.0
    assert merged.req_per_s == 0.5
    assert merged.errors == 2  # the 409 (not expected here) and the exception
    assert merged.errors_by_status() == {"409": 1, "ClientOSError": 1}
    summary = merged.summary()
    assert summary["p50_ms"] == 0.3
    assert summary["max_ms"] == 0.5
    assert summary["error_rate"] == 0.4


def test_expected_statuses_are_not_errors() -> None:
    r = WorkerResult(requests=2, statuses={201: 1, 409: 1}, window_s=1.0)
    merged = merge_results([r], frozenset({201, 409}), LoadConfig())
    assert merged.errors == 0


def test_request_bound_is_shared_among_processes() -> None:
    assert split_requests(10, 3) == [4, 3, 3]
    assert sum(split_requests(1_000_001, 4)) == 1_000_001


def test_worker_state_ids_never_collide_across_tasks_and_processes() -> None:
    env = BenchEnv(urls={})
    states = [WorkerState(p, t, 2, 3, env) for p in range(2) for t in range(3)]
    ids = [s.next_id() for _ in range(50) for s in states]
    assert len(set(ids)) == len(ids) == 300
    assert sorted(ids) == list(range(300))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "http://example.com/", "http://0.0.0.0:8080",
                                 "http://192.0.2.1", "ftp://127.0.0.1/", "http://127.0.0.1.example.com/"])
def test_non_loopback_targets_are_refused(url: str) -> None:
    with pytest.raises(NotLoopback):
        check_loopback_url(url)


def test_a_run_against_a_non_loopback_env_is_refused_before_any_process_starts() -> None:
    env = BenchEnv(urls={"ticketing": "http://203.0.113.5:8081"})
    with pytest.raises(NotLoopback):
        run_load("healthz", {}, env, LoadConfig(processes=1, concurrency=1, duration_s=1))


async def test_the_connector_refuses_to_connect_anywhere_but_loopback() -> None:
    async with aiohttp.ClientSession(connector=_loopback_connector(4)) as session:
        with pytest.raises(NotLoopback):
            async with session.get("http://192.0.2.1:9/"):
                pass


def test_a_short_run_respects_the_request_bound_and_counts_statuses() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "loadtest.hello_server", "--port", str(port)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        env = BenchEnv(urls={"hello": f"http://127.0.0.1:{port}"})
        config = LoadConfig(processes=2, concurrency=2, duration_s=5, warmup_s=0, max_requests=40)
        result = run_load("loadtest.scenarios._hello", {"url": f"http://127.0.0.1:{port}/hello"}, env, config)
    finally:
        server.terminate()
        server.wait(10)
    assert result.failures == []
    assert result.issued == 40
    # 40 hello-world answers take far less than the 5 s allowed, so all are measured but a task's
    # first request when it starts a hair before the window opens (the event loop's timers have
    # millisecond resolution): 2 processes x 2 tasks at most
    assert 40 - 2 * 2 <= result.requests == result.histogram.total <= 40
    assert result.statuses == {200: result.requests}
    assert result.errors == 0
    assert 0 < result.window_s <= 5.0  # ends at the last reply, within the duration
    # each latency is positive and inside the window it was measured in
    assert 0 < result.histogram.percentile_us(0) <= result.histogram.max_us <= result.window_s * 1_000_000


# ----------------------------------------------------------------------------- the lean client

def test_response_heads_are_parsed_with_lower_cased_headers() -> None:
    status, headers = parse_head(b"HTTP/1.1 409 Conflict\r\nContent-Type: application/problem+json\r\n"
                                 b"Retry-After: 1\r\nVary: a\r\nVary: b")
    assert status == 409
    assert headers == {"content-type": "application/problem+json", "retry-after": "1", "vary": "a, b"}


def test_a_garbage_status_line_is_an_error() -> None:
    with pytest.raises(RawHttpError):
        parse_head(b"SSH-2.0-OpenSSH_9.2")


def test_chunked_bodies_are_decoded_only_when_complete() -> None:
    data = bytearray(b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\nNEXT")
    assert _dechunk(data) == (b"Wikipedia", len(data) - 4)
    assert _dechunk(bytearray(b"4\r\nWiki\r\n5\r\nped")) is None


def test_requests_are_built_with_host_and_length() -> None:
    wire = build_request("POST", "127.0.0.1", 8080, "/api/rooms/r1/join", {"X-Id": "1"}, b"{}")
    assert wire == (b"POST /api/rooms/r1/join HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Id: 1\r\n"
                    b"Content-Length: 2\r\n\r\n{}")
    assert b"Content-Length" not in build_request("GET", "localhost", 80, "/", None, b"")


async def test_the_lean_client_refuses_non_loopback_urls() -> None:
    with pytest.raises(NotLoopback):
        await RawClient().get("http://192.0.2.1:9/")


async def test_the_lean_client_talks_to_a_real_aiohttp_server(aiohttp_server: Any) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        if request.path == "/chunked":
            resp = web.StreamResponse(status=202)
            await resp.prepare(request)
            await resp.write(b"part1-")
            await resp.write(b"part2")
            await resp.write_eof()
            return resp
        body = await request.read()
        return web.json_response({"method": request.method, "len": len(body), "auth": request.headers.get("X")},
                                 status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    server = await aiohttp_server(app)
    base = f"http://127.0.0.1:{server.port}"
    client = RawClient(timeout_s=5)
    try:
        first = await client.post(base + "/x", json_body={"a": 1}, headers={"X": "t"})
        assert first.status == 201
        assert first.json() == {"method": "POST", "len": 7, "auth": "t"}
        protocol = client._protocol
        second = await client.get(base + "/y?q=1")
        assert second.json()["method"] == "GET"
        assert client._protocol is protocol  # the same keep-alive connection
        chunked = await client.get(base + "/chunked")
        assert (chunked.status, chunked.body) == (202, b"part1-part2")
    finally:
        client.close()


def test_refused_connections_are_counted_as_errors_outside_the_latency_percentiles() -> None:
    port = free_port()  # nothing listens there
    env = BenchEnv(urls={"hello": f"http://127.0.0.1:{port}"})
    config = LoadConfig(processes=1, concurrency=2, duration_s=0.5, warmup_s=0, max_requests=1000)
    result = run_load("loadtest.scenarios._hello", {"url": f"http://127.0.0.1:{port}/hello"}, env, config)
    assert result.failures == []
    # each of the 2 tasks waits 10 ms after a refusal (a refused connection must not spin the
    # loop): at most 0.5 s / 10 ms + 1 attempts each, and at least one
    assert 0 < result.requests <= result.issued <= 2 * (50 + 1)
    assert result.statuses == {}
    assert result.errors == result.requests == sum(result.exceptions.values())
    assert result.histogram.total == 0
