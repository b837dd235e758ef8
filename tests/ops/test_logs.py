"""Structured logs as the services emit them: one JSON object per line, the request id of the
request being served, domain ids as fields, secrets never written."""

from __future__ import annotations

import ast
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from stagedoor.cli import COMPONENTS
from stagedoor.edge import add_route
from stagedoor.logs import JsonFormatter, RequestIdFilter
from stagedoor.settings import Settings
from tests.support.ops import ROOT, SERVICE_PACKAGES

probe_logger = logging.getLogger("tests.ops.log_probe")
# Field names a log call must never pass (the formatter redacts them anyway; passing them is a bug).
FORBIDDEN_FIELDS = {"password", "token", "access_token", "refresh_token", "queue_token", "admission_token",
                    "authorization", "secret", "client_secret", "card", "email", "api_key"}


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter("ops-test"))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def _probe(request: web.Request) -> web.Response:
    probe_logger.info("probe_logged", extra={"room": "r1", "event_id": "e1", "visitor_id": "v1",
                                             "queue_token": "must-not-appear"})
    return web.Response(text="ok")


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("internal detail 7f3a: stays in the log, never in the response")


@pytest.mark.parametrize("component", sorted(COMPONENTS))
async def test_log_lines_carry_the_request_id_and_fields_and_no_secrets(
    settings: Settings, keyring: Any, aiohttp_client: Any, json_log: io.StringIO, component: str,
) -> None:
    app = COMPONENTS[component].create_app(settings, keyring)
    add_route(app, "GET", "/_ops_test/log", _probe)
    add_route(app, "GET", "/_ops_test/boom", _boom)
    client = await aiohttp_client(app)

    response = await client.get("/_ops_test/log", headers={"X-Request-Id": "ops-test-rid-1"})
    assert response.status == 200
    assert response.headers["X-Request-Id"] == "ops-test-rid-1"
    (line,) = [doc for doc in _lines(json_log) if doc["event"] == "probe_logged"]
    assert line["request_id"] == "ops-test-rid-1"
    assert (line["room"], line["event_id"], line["visitor_id"]) == ("r1", "e1", "v1")
    assert line["queue_token"] == "[redacted]" and "must-not-appear" not in json_log.getvalue()
    assert {"ts", "level", "logger", "service"} <= set(line)

    response = await client.get("/_ops_test/boom", headers={"X-Request-Id": "ops-test-rid-2"})
    assert response.status == 500
    body = await response.json()
    assert body["request_id"] == "ops-test-rid-2" and "7f3a" not in json.dumps(body)
    (error,) = [doc for doc in _lines(json_log) if doc["event"] == "unhandled_error"]
    assert error["request_id"] == "ops-test-rid-2" and error["level"] == "error" and "7f3a" in error["exc"]


def _log_calls() -> Iterator[tuple[str, int, str, set[str]]]:
    """(file, line, event name, extra keys) of every logger.<level>(...) call in the services."""
    for package in SERVICE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in {"debug", "info", "warning", "error", "exception", "critical"}
                        and isinstance(node.func.value, ast.Name) and node.func.value.id in {"logger", "log"}):
                    continue
                event = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else "?"
                keys: set[str] = set()
                for keyword in node.keywords:
                    if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                        keys |= {k.value for k in keyword.value.keys if isinstance(k, ast.Constant)}
                yield str(path.relative_to(ROOT)), node.lineno, str(event), keys


def test_no_log_call_passes_a_secret_field() -> None:
    offenders = [(f, n, e, sorted(keys & FORBIDDEN_FIELDS)) for f, n, e, keys in _log_calls()
                 if keys & FORBIDDEN_FIELDS]
    assert offenders == []


# Attributes every LogRecord has: a log call passing one of them in ``extra`` raises KeyError
# ("Attempt to overwrite ...") when the record is made, i.e. only at levels that are enabled.
RESERVED_FIELDS = set(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__) | {"message", "asctime"}


def test_no_log_call_passes_a_field_the_log_record_reserves() -> None:
    # admission's room_put passed "created" and ticketing's startup warning "module": each
    # raised at INFO level, so an admin PUT answered 500 under `stagedoor up` (tests log at WARNING)
    offenders = [(f, n, e, sorted(keys & RESERVED_FIELDS)) for f, n, e, keys in _log_calls()
                 if keys & RESERVED_FIELDS]
    assert offenders == []


def test_log_events_are_names_not_prose() -> None:
    prose = [(f, n, e) for f, n, e, _ in _log_calls() if e != "?" and (" " in e or e != e.lower())]
    assert prose == []


def inventory(select: Callable[[set[str]], bool] = lambda keys: True) -> list[str]:
    """`python -c 'from tests.ops.test_logs import inventory; print(*inventory(), sep="\\n")'`"""
    return [f"{f}:{n} {e} {sorted(k)}" for f, n, e, k in _log_calls() if select(k)]
