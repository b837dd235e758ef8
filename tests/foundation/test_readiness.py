"""Readiness flips to 503 when a dependency goes away, and back when it returns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from stagedoor.embedded import EmbeddedRedis, database_of
from stagedoor.settings import Settings


async def test_readiness_is_503_while_redis_is_stopped(
    service_client: Any, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        client = await service_client("ticketing", make_settings(redis_url=server.url, dependency_timeout_s=0.5))
        assert (await client.get("/readyz")).status == 200
        server.stop()
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
        assert problem["checks"] == {"redis": "down", "postgres": "up"}
        assert resp.headers["Retry-After"] == "1"
        assert (await client.get("/healthz")).status == 200  # alive, just not ready
        metrics = await (await client.get("/metrics")).text()
        assert 'stagedoor_dependency_up{app="ticketing",dependency="redis"} 0.0' in metrics

        restarted = EmbeddedRedis(tmp_path / "redis", port=server.port, persist=False).start()
        try:
            assert (await client.get("/readyz")).status == 200
        finally:
            restarted.stop()
    finally:
        server.stop()


async def test_readiness_is_503_when_postgres_is_unreachable(
    service_client: Any, settings: Settings, pg_server_url: str
) -> None:
    client = await service_client("admission", settings)
    assert (await client.get("/readyz")).status == 200
    # Take the database away under the running pool: its connections are terminated.
    conn = await asyncpg.connect(pg_server_url)
    try:
        await conn.execute(f'DROP DATABASE "{database_of(settings.database_url or "")}" WITH (FORCE)')
    finally:
        await conn.close()
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["checks"]["postgres"] == "down"
