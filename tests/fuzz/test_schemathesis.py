"""API fuzzing: schemathesis against each service's own /openapi.json, on a real server.

Each service runs in-process on a free port (pytest-aiohttp's server, on the test's event
loop); schemathesis' synchronous client runs in a worker thread and drives it through
HTTP. Every operation is exercised with valid and invalid inputs (positive and negative
generation), as admin (the admin API key) and as a customer (an access token), with a
bounded number of examples (``STAGEDOOR_TEST_FUZZ_EXAMPLES``, default 20 per operation
and identity; no shrinking, so the whole run stays within a couple of minutes on 2 cores).

Checks: no 5xx; the status code is documented; the content type and body match the
documented response. A failure message names the operation and carries schemathesis'
reproducing curl command. Rate limits are off here (they are tested in tests/abuse), so
the fuzzer reaches the handlers instead of a 429.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Annotated, Any

import hypothesis
import msgspec
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from stagedoor.cli import COMPONENTS
from stagedoor.keys import KeyRing
from stagedoor.metrics import BaseMetrics
from stagedoor.openapi import Api
from stagedoor.settings import Settings
from stagedoor.web import base_app, decode_query, json_response
from tests.support.settings import ADMIN_KEY

MAX_EXAMPLES = int(os.environ.get("STAGEDOOR_TEST_FUZZ_EXAMPLES", "20"))
REQUEST_TIMEOUT_S = 10
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
STREAMING = ("text/event-stream",)  # long-lived responses: their status/headers are tested elsewhere


def _is_streaming(operation: Any) -> bool:
    responses = operation.definition.raw.get("responses", {})
    return any(ct in STREAMING for r in responses.values() for ct in (r.get("content") or {}))


def _runner(strategy: Any, base_url: str, headers: dict[str, str]) -> Callable[[], None]:
    @hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                         print_blob=False)
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=REQUEST_TIMEOUT_S)

    return run  # type: ignore[no-any-return]


def fuzz(base_url: str, identities: dict[str, dict[str, str]]) -> tuple[list[str], int]:
    """Run every operation for every identity; returns (failure descriptions, operations run)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if _is_streaming(operation):
            continue
        strategy = (operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
                    | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        for who, headers in identities.items():
            ran += 1

            run = _runner(strategy, base_url, headers)
            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis FailureGroup, transport errors
                failures.append(f"--- as {who}: {operation.method.upper()} {operation.path}\n{exc}")
    return failures, ran


@pytest.mark.parametrize("service", ["waitingroom", "ticketing", "admission", "worker"])
async def test_the_api_survives_fuzzing_and_matches_its_schema(
        service: str, make_settings: Callable[..., Settings], keyring: KeyRing, create_user: Callable[..., Any],
        aiohttp_server: Any) -> None:
    # aiohttp_server last: it is torn down first, before the test database is dropped.
    settings = make_settings(rate_limits_enabled=False)
    server = await aiohttp_server(COMPONENTS[service].create_app(settings, keyring))
    base_url = str(server.make_url("")).rstrip("/")
    customer = await create_user(roles=["customer"])
    identities = {"admin": {"Authorization": f"Bearer {ADMIN_KEY}"}, "customer": customer.headers}
    failures, ran = await asyncio.to_thread(fuzz, base_url, identities)
    assert ran > 0
    assert not failures, f"{len(failures)} of {ran} operation runs failed:\n\n" + "\n\n".join(failures)


# ---------------------------------------------------------------- control: the harness does catch bugs

class _Query(msgspec.Struct):
    n: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0


class _Out(msgspec.Struct):
    value: int


def _broken_app(settings: Settings) -> web.Application:
    api = Api(tag="control")

    @api.get("/crash", summary="500 for large n", query=_Query, response=_Out, errors=(422,))
    async def crash(request: web.Request) -> web.Response:
        q = decode_query(request, _Query)
        if q.n > 50:
            raise RuntimeError("deliberate bug")
        return json_response(_Out(q.n))

    @api.get("/drift", summary="answers a shape its schema does not promise", response=_Out)
    async def drift(request: web.Request) -> web.Response:
        return json_response({"value": "not an int"})

    return base_app(settings, BaseMetrics("fuzzcontrol"), [api], title="control", uses_redis=False, uses_db=False)


async def test_the_harness_reports_a_5xx_and_a_schema_mismatch(aiohttp_server: Any,
                                                                make_settings: Callable[..., Settings]) -> None:
    server = await aiohttp_server(_broken_app(make_settings()))
    failures, _ = await asyncio.to_thread(fuzz, str(server.make_url("")).rstrip("/"), {"anonymous": {}})
    text = "\n".join(failures)
    assert "GET /crash" in text and "500" in text
    assert "GET /drift" in text
