"""The servers every test runs on: real Redis and real PostgreSQL.

- ``STAGEDOOR_TEST_REDIS_URL`` / ``STAGEDOOR_TEST_DATABASE_URL`` point at existing servers
  (CI sets them to the machine's services); otherwise throwaway servers are started once
  per session from the embedded binaries.
- Isolation: every test gets its own Redis key prefix and its own PostgreSQL database,
  cloned from a migrated template (so tests can run in parallel, e.g. pytest-xdist).
- ``redis_cluster_url``: a real 3-master Redis Cluster, for the cluster tests.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis_asyncio

from stagedoor.embedded import EmbeddedPostgres, EmbeddedRedis, with_database
from stagedoor.migrate import migrate_url


def _reachable_redis(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


async def _reachable_pg(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except Exception:
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
def _servers_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="stagedoor-test-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def redis_url(_servers_dir: Path) -> Iterator[str]:
    url = os.environ.get("STAGEDOOR_TEST_REDIS_URL")
    if url:
        if not _reachable_redis(url):
            pytest.exit(f"STAGEDOOR_TEST_REDIS_URL={url} is not reachable", returncode=3)
        yield url
        return
    server = EmbeddedRedis(_servers_dir / "redis", persist=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_server_url(_servers_dir: Path) -> Iterator[str]:
    url = os.environ.get("STAGEDOOR_TEST_DATABASE_URL")
    if url:
        if not asyncio.run(_reachable_pg(url)):
            pytest.exit(f"STAGEDOOR_TEST_DATABASE_URL={url} is not reachable", returncode=3)
        yield url
        return
    server = EmbeddedPostgres(_servers_dir / "postgres", keep=False).start()
    try:
        yield server.url
    finally:
        server.stop()


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """A migrated database that per-test databases are cloned from."""
    name = f"sdtpl_{_worker_id()}_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        await migrate_url(with_database(pg_server_url, name))

    async def drop() -> None:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    try:
        yield name
    finally:
        asyncio.run(drop())


@pytest.fixture
async def database_url(pg_server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    name = f"sdt_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await conn.close()
    try:
        yield with_database(pg_server_url, name)
    finally:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
def redis_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def redis_client(redis_url: str, redis_prefix: str) -> AsyncIterator[redis_asyncio.Redis]:
    """A raw client on the test server; keys under this test's prefix are deleted afterwards."""
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i:i + 500])
        await client.aclose()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
def redis_cluster_url(_servers_dir: Path) -> Iterator[str]:
    """A real Redis Cluster of 3 masters: ``STAGEDOOR_TEST_REDIS_CLUSTER_URL`` (any node), or one
    started here from the redis-server binary (``redis-cli --cluster create``); skips if neither."""
    url = os.environ.get("STAGEDOOR_TEST_REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    from stagedoor.embedded import EmbeddedRedisCluster, EmbeddedUnavailable

    try:
        cluster = EmbeddedRedisCluster(_servers_dir / "redis-cluster", masters=3).start()
    except EmbeddedUnavailable as exc:
        pytest.skip(f"no Redis Cluster for this test: {exc}")
    try:
        yield cluster.url
    finally:
        cluster.stop()
