"""The shared HTTP plumbing every service uses, on every service."""

from __future__ import annotations

import gzip
import logging
import re
from typing import Annotated, Any

import msgspec
import pytest
from aiohttp import web
from redis import exceptions as redis_exceptions

from stagedoor import edge
from stagedoor.metrics import BaseMetrics
from stagedoor.openapi import Api
from stagedoor.settings import Settings
from stagedoor.web import base_app, decode_body, json_response

SERVICES = ["waitingroom", "ticketing", "admission", "worker"]
SEEN = web.AppKey("seen", list)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_answers_health_readiness_metrics_and_openapi(service: str, service_client: Any) -> None:
    client = await service_client(service)

    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["status"] == "ok"

    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    body = await ready.json()
    assert body["status"] == "ready" and set(body["checks"].values()) == {"up"}

    metrics = await client.get("/metrics")
    assert metrics.status == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    text = await metrics.text()
    assert "http_request_duration_seconds_bucket" in text
    assert 'route="/healthz"' in text

    spec_resp = await client.get("/openapi.json")
    assert spec_resp.status == 200
    spec = await spec_resp.json()
    assert spec["openapi"].startswith("3.")
    assert "/healthz" in spec["paths"] and "/readyz" in spec["paths"]


@pytest.mark.parametrize("service", SERVICES)
async def test_unknown_routes_and_methods_are_problems(service: str, service_client: Any) -> None:
    client = await service_client(service)
    resp = await client.get("/no/such/thing")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["status"] == 404 and problem["type"] == "/problems/not-found"

    resp = await client.delete("/healthz")
    assert resp.status == 405
    assert resp.content_type == "application/problem+json"
    assert "GET" in resp.headers["Allow"]


async def test_request_ids_are_echoed_or_generated(service_client: Any) -> None:
    client = await service_client("ticketing")
    resp = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-Id": "bad id with spaces\u00e9"})
    assert resp.headers["X-Request-Id"] != "bad id with spaces\u00e9"
    assert len(resp.headers["X-Request-Id"]) == 32
    resp = await client.get("/nope")
    assert (await resp.json())["request_id"] == resp.headers["X-Request-Id"]


# ---------------------------------------------------------------- body handling


class Thing(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    count: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1


def _body_app(settings: Settings) -> web.Application:
    api = Api()
    seen: list[Thing] = []

    @api.post("/things", body=Thing, response=Thing, status=201, summary="make a thing")
    async def make_thing(request: web.Request) -> web.Response:
        thing = await decode_body(request, Thing)
        seen.append(thing)
        return json_response(thing, status=201)

    @api.get("/boom", summary="fails")
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    @api.get("/redis-down", summary="meets an unreachable Redis", errors=(503,))
    async def redis_down(request: web.Request) -> web.Response:
        raise redis_exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    @api.get("/redis-wrongtype", summary="sends Redis a command it refuses for good", errors=(500,))
    async def redis_wrongtype(request: web.Request) -> web.Response:
        raise redis_exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    app = base_app(settings, BaseMetrics("test"), [api], title="t", uses_redis=False, uses_db=False)
    app[SEEN] = seen
    return app


@pytest.fixture
async def body_client(aiohttp_client: Any, settings: Settings) -> Any:
    return await aiohttp_client(_body_app(settings))


async def test_a_valid_body_is_decoded(body_client: Any) -> None:
    resp = await body_client.post("/things", json={"name": "a", "count": 2})
    assert resp.status == 201
    assert await resp.json() == {"name": "a", "count": 2}


@pytest.mark.parametrize(
    ("data", "content_type", "status", "ptype"),
    [
        (b'{"name": "a",', "application/json", 400, "/problems/malformed-json"),
        (b'{"name": "a", "colour": "red"}', "application/json", 422, "/problems/validation-failed"),
        (b'{"name": ""}', "application/json", 422, "/problems/validation-failed"),
        (b'{"name": "a", "count": 99}', "application/json", 422, "/problems/validation-failed"),
        (b'{"count": 1}', "application/json", 422, "/problems/validation-failed"),
        (b"[1, 2]", "application/json", 422, "/problems/validation-failed"),
        (b"name=a", "application/x-www-form-urlencoded", 415, "/problems/unsupported-media-type"),
        (b'{"name": "' + b"a" * (1024 * 1024) + b'"}', "application/json", 413, "/problems/payload-too-large"),
    ],
    ids=["bad-json", "unknown-field", "too-short", "out-of-range", "missing-field", "wrong-shape",
         "wrong-content-type", "one-mebibyte"],
)
async def test_bad_bodies_get_a_problem_and_change_nothing(
    body_client: Any, data: bytes, content_type: str, status: int, ptype: str
) -> None:
    resp = await body_client.post("/things", data=data, headers={"Content-Type": content_type})
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["type"] == ptype
    assert problem["status"] == status
    assert problem["detail"]
    assert body_client.server.app[SEEN] == []


async def test_validation_problems_name_the_field(body_client: Any) -> None:
    resp = await body_client.post("/things", json={"name": "a", "count": "many"})
    problem = await resp.json()
    assert problem["errors"] == [{"field": "$.count", "message": "Expected `int`, got `str`"}]


async def test_a_chunked_body_over_the_limit_is_refused(body_client: Any) -> None:
    async def chunks():
        for _ in range(200):
            yield b" " * 1024

    resp = await body_client.post("/things", data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert resp.content_type == "application/problem+json"


async def test_a_small_chunked_body_is_decoded(body_client: Any) -> None:
    async def chunks():
        yield b'{"name": '
        yield b'"a"}'

    resp = await body_client.post("/things", data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status == 201
    assert await resp.json() == {"name": "a", "count": 1}


async def test_a_compressed_body_is_judged_by_its_decompressed_size(body_client: Any) -> None:
    small = gzip.compress(b'{"name": "a"}')
    resp = await body_client.post("/things", data=small,
                                  headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.status == 201, await resp.text()
    bomb = gzip.compress(b'{"name": "' + b"a" * (4 * 1024 * 1024) + b'"}')  # ~4 KiB on the wire
    assert len(bomb) < 64 * 1024
    resp = await body_client.post("/things", data=bomb,
                                  headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.status == 413
    assert resp.content_type == "application/problem+json"
    assert [thing.name for thing in body_client.server.app[SEEN]] == ["a"]  # the bomb changed nothing


async def test_an_unhandled_error_is_a_500_without_internals(body_client: Any) -> None:
    resp = await body_client.get("/boom")
    assert resp.status == 500
    assert resp.content_type == "application/problem+json"
    text = await resp.text()
    assert "secret internal detail" not in text and "Traceback" not in text


async def test_an_unreachable_redis_is_a_503_to_retry_logged_once_a_second(body_client: Any, caplog: Any,
                                                                          monkeypatch: Any) -> None:
    # every service, every route: a Redis outage meets every request of a crowd, so it is a 503
    # with Retry-After (clients and queue pages poll again), not a 500 and a traceback each
    caplog.set_level(logging.WARNING, logger="stagedoor.edge")
    monkeypatch.setattr(edge, "_redis_warned_at", float("-inf"))  # no earlier test's line counts
    for _ in range(5):
        resp = await body_client.get("/redis-down")
        assert resp.status == 503 and resp.content_type == "application/problem+json"
        assert resp.headers["Retry-After"] == "2"
        problem = await resp.json()
        assert problem["type"] == "/problems/redis-unavailable" and problem["reason"] == "unreachable"
    warnings = [r for r in caplog.records if r.name == "stagedoor.edge"]
    assert [r.getMessage() for r in warnings] == ["redis_unavailable"]  # five requests within a second: one line
    assert warnings[0].reason == "unreachable"  # type: ignore[attr-defined]


async def test_a_redis_error_that_is_not_a_passing_state_is_a_logged_500(body_client: Any, caplog: Any) -> None:
    # WRONGTYPE, a bad argument, an unknown command: retrying will not help, it is our bug
    caplog.set_level(logging.ERROR, logger="stagedoor.edge")
    resp = await body_client.get("/redis-wrongtype")
    assert resp.status == 500 and resp.content_type == "application/problem+json"
    assert (await resp.json())["type"] == "/problems/internal-error"
    assert "WRONGTYPE" not in await resp.text()
    assert [r.getMessage() for r in caplog.records if r.name == "stagedoor.edge"] == ["unhandled_error"]


async def test_openapi_describes_bodies_and_problems(body_client: Any) -> None:
    spec = await (await body_client.get("/openapi.json")).json()
    op = spec["paths"]["/things"]["post"]
    schema_ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    thing = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]
    assert thing["properties"]["count"]["maximum"] == 10
    assert {"400", "413", "415", "422"} <= set(op["responses"])


def test_in_flight_gauge_reads_the_plain_counter_at_scrape_time() -> None:
    from prometheus_client import generate_latest

    metrics = BaseMetrics("probe")
    metrics.in_flight.inc()
    metrics.in_flight.inc()
    metrics.in_flight.dec()
    assert 'http_requests_in_flight{app="probe"} 1.0' in generate_latest(metrics.registry).decode()
    metrics.in_flight.dec()
    assert 'http_requests_in_flight{app="probe"} 0.0' in generate_latest(metrics.registry).decode()


def test_new_request_ids_are_32_hex_digits_unique_and_reseeded_in_a_forked_child() -> None:
    from stagedoor.edge import _RequestIds

    ids = _RequestIds()
    first = [ids.new() for _ in range(1000)]
    assert len(set(first)) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in first)
    ids.reset()  # what os.register_at_fork runs in a forked child: a new prefix
    assert ids.new()[:16] != first[0][:16]
