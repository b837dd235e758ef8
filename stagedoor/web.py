"""What every stagedoor aiohttp app shares: AppKeys, cleanup contexts for Redis,
PostgreSQL and signing keys, the health/readiness/metrics/OpenAPI routes, and the
body/query decoding that turns bad input into clear 4xx problems.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis

from stagedoor import errors
from stagedoor.connections import make_pool, make_redis, postgres_ready, redis_ready
from stagedoor.edge import add_route, add_routes, install
from stagedoor.hot_http import HotResponse
from stagedoor.keys import KeyRing
from stagedoor.lua import LuaScripts
from stagedoor.metrics import BaseMetrics
from stagedoor.openapi import Api, build_spec
from stagedoor.problems import METRICS_KEY
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.security import validate_settings as validate_security_settings
from stagedoor.settings import Settings
from stagedoor.static_files import static_files

logger = logging.getLogger(__name__)

T = TypeVar("T")

SETTINGS = web.AppKey("settings", Settings)
METRICS = METRICS_KEY
REDIS = web.AppKey("redis", Redis)  # the pooled client: also CALLS.redis
CALLS = web.AppKey("redis_calls", RedisCalls)  # how stores call Redis (stagedoor/redis_calls.py)
KEYS = web.AppKey("redis_keys", RedisKeys)
DB = web.AppKey("db", asyncpg.Pool)
KEYRING = web.AppKey("keyring", KeyRing)
Probe = Callable[[], Awaitable[bool]]
READINESS = web.AppKey("readiness", dict[str, Probe])
OPENAPI = web.AppKey("openapi", dict[str, Any])

_ENCODER = msgspec.json.Encoder()


# ---------------------------------------------------------------- responses and input

# The Content-Type as-is: aiohttp's content_type= argument parses and rebuilds it per call.
_JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS
    return web.Response(body=_ENCODER.encode(data), status=status, headers=all_headers)


def hot_json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HotResponse:
    """:func:`json_response` for a route on the hot path (stagedoor/hot_http/)."""
    all_headers: CIMultiDict[str] = CIMultiDict(_JSON_HEADERS)
    if headers:
        all_headers.extend(headers)
    return HotResponse(_ENCODER.encode(data), status, all_headers)


def _validation_errors(exc: msgspec.ValidationError) -> tuple[str, list[dict[str, str]]]:
    message = str(exc)
    field = "$"
    if " - at `" in message:
        message, _, path = message.partition(" - at `")
        field = path.rstrip("`")
    return message, [{"field": field, "message": message}]


def decode_json(raw: bytes, into: type[T]) -> T:
    """Decode a JSON document into a msgspec type: malformed -> 400, invalid -> 422."""
    try:
        return msgspec.json.decode(raw or b"{}", type=into)
    except msgspec.ValidationError as exc:
        message, errs = _validation_errors(exc)
        raise errors.ValidationFailed(message, errors=errs) from None
    except msgspec.DecodeError as exc:
        raise errors.MalformedJson(f"body is not valid JSON: {exc}") from None


async def decode_body(request: web.Request, into: type[T]) -> T:
    """Read and decode a JSON body with the size limit and content type enforced."""
    # the usual header exactly as clients send it needs no parse (request.content_type parses)
    if request.body_exists and request.headers.get("Content-Type") != "application/json":
        ctype = request.content_type
        if ctype != "application/json" and not ctype.endswith("+json"):
            raise errors.UnsupportedMediaType(f"expected application/json, got {ctype or 'nothing'}")
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise errors.PayloadTooLarge(f"body of {request.content_length} bytes exceeds the {limit} byte limit",
                                     limit_bytes=limit)
    content = request.content
    if content.is_eof():
        # The whole body came with the head (a small JSON body always does): take it as it lies,
        # without request.read()'s chunk loop. Nothing reads a decoded body a second time.
        raw = content.read_nowait()
        if len(raw) > limit:  # a chunked body has no Content-Length to refuse it by above
            raise errors.PayloadTooLarge(f"body exceeds the {limit} byte limit", limit_bytes=limit)
        return decode_json(raw, into)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.PayloadTooLarge(f"body exceeds the {limit} byte limit", limit_bytes=limit) from None
    return decode_json(raw, into)


def decode_query(request: web.Request, into: type[T]) -> T:
    """Decode query parameters into a msgspec Struct (strings converted, bounds checked)."""
    raw: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        raw[key] = values if len(values) > 1 else values[0]
    try:
        return msgspec.convert(raw, into, strict=False)
    except msgspec.ValidationError as exc:
        message, errs = _validation_errors(exc)
        raise errors.ValidationFailed(message, errors=errs) from None


# ---------------------------------------------------------------- cleanup contexts

async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = make_redis(settings)
    scripts = LuaScripts(client)
    try:
        await scripts.load_all()
    except Exception:
        await client.aclose()
        raise
    app[REDIS] = client
    metrics = app[METRICS]
    app[CALLS] = calls = RedisCalls.from_settings(
        settings, client, scripts,
        on_event=lambda event: metrics.redis_pipeline_events_total.labels(metrics.app_name, event).inc())
    app[KEYS] = RedisKeys(settings.redis_key_prefix)
    app[READINESS]["redis"] = lambda: redis_ready(client, settings.dependency_timeout_s)
    yield
    await calls.aclose()
    await client.aclose()


async def db_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await make_pool(settings)
    app[DB] = pool
    app[READINESS]["postgres"] = lambda: postgres_ready(pool, settings.dependency_timeout_s)
    yield
    await pool.close()


def keyring_ctx(create: bool = False) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if KEYRING not in app:
            settings = app[SETTINGS]
            if not settings.signing_keys_dir:
                raise errors.StagedoorError("STAGEDOOR_SIGNING_KEYS_DIR is required")
            app[KEYRING] = KeyRing.from_dir(Path(settings.signing_keys_dir), create=create)
        yield
    return ctx


# ---------------------------------------------------------------- shared routes

async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "service": request.app[METRICS].app_name})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    metrics = app[METRICS]
    checks: dict[str, str] = {}
    for name, probe in app[READINESS].items():
        ok = await probe()
        metrics.dependency_up.labels(metrics.app_name, name).set(1 if ok else 0)
        checks[name] = "up" if ok else "down"
    if all(v == "up" for v in checks.values()):
        return json_response({"status": "ready", "checks": checks})
    down = ", ".join(k for k, v in checks.items() if v != "up")
    raise errors.DependencyUnavailable(f"unreachable: {down}", retry_after_s=1, checks=checks)


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_endpoint(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


class Health(msgspec.Struct):
    status: str
    service: str


class Ready(msgspec.Struct):
    status: str
    checks: dict[str, str]


def _ops_api() -> Api:
    api = Api(tag="operations")
    api.get("/healthz", summary="Process is alive", response=Health)(healthz)
    api.get("/readyz", summary="Dependencies reachable (503 otherwise)", response=Ready, errors=(503,))(readyz)
    api.get("/metrics", summary="Prometheus metrics", response="text", response_content_type="text/plain")(
        metrics_endpoint)
    api.get("/openapi.json", summary="This document", response=dict[str, Any])(openapi_endpoint)
    return api


# ---------------------------------------------------------------- the base app

def base_app(
    settings: Settings,
    metrics: BaseMetrics,
    apis: Sequence[Api],
    *,
    title: str,
    description: str = "",
    uses_redis: bool = True,
    uses_db: bool = True,
    keyring: KeyRing | None = None,
) -> web.Application:
    """An app with the edge (stagedoor/edge.py), the shared contexts and the operational routes.

    Services add their own cleanup contexts (after these) and AppKeys; every further route goes
    through :func:`stagedoor.edge.add_route` / :func:`~stagedoor.edge.add_routes` (checked at startup).
    """
    app = web.Application(client_max_size=settings.max_body_bytes)  # no middleware: see stagedoor/edge.py
    validate_security_settings(settings)  # trusted proxies / rate-limit exemptions parse, or fail at start
    install(app, settings, metrics)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[READINESS] = {}
    if keyring is not None:
        app[KEYRING] = keyring
    if uses_redis:
        app.cleanup_ctx.append(redis_ctx)
    if uses_db:
        app.cleanup_ctx.append(db_ctx)
    all_apis = [_ops_api(), *apis]
    for api in all_apis:
        add_routes(app, api.routes)
    app[OPENAPI] = build_spec(title, "0.1.0", all_apis, description, max_body_bytes=settings.max_body_bytes)
    return app


def add_static(app: web.Application, prefix: str, directory: Path) -> None:
    """Serve the files of ``directory`` (not its subdirectories) at ``prefix/<name>``, behind the
    edge. The names are listed once (stagedoor/static_files.py): a request names one of them or
    gets a 404, so no path from a request ever reaches the file system. A request for the
    current version (``?v=``, what pages link through ``static_url``) may be cached for good;
    any other revalidates (``no-cache``). Conditional requests (ETag, If-Modified-Since) answer 304."""
    files = static_files(directory, prefix)

    async def static_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = files.path(name)
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": files.cache_control(name, request.query.get("v"))})

    add_route(app, "GET", prefix.rstrip("/") + "/{name}", static_file)
