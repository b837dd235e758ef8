"""Test harness: real Redis and real PostgreSQL for every test.

- ``STAGEDOOR_TEST_REDIS_URL`` / ``STAGEDOOR_TEST_DATABASE_URL`` point at existing servers
  (CI sets them to the machine's services); otherwise throwaway servers are started once
  per session from the embedded binaries.
- Isolation: every test gets its own Redis key prefix and its own PostgreSQL database,
  cloned from a migrated template (so tests can run in parallel, e.g. pytest-xdist).
- ``make_settings(**overrides)`` builds Settings for a test; ``service_client(name)``
  starts a service app (waitingroom, ticketing, admission, worker) on pytest-aiohttp, served
  as stagedoor.cli serves it: through stagedoor/hot_http.py's HotSite (the waiting room's status
  and join on the hot path, everything else handed to aiohttp), or through aiohttp's own TCPSite
  when the settings say ``hot_http=False`` (``STAGEDOOR_TEST_HOT_HTTP=false`` makes that the
  default of ``make_settings``, to run the suite without the hot layer).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis_asyncio
from aiohttp.test_utils import TestServer
from yarl import URL

from stagedoor.auth import mint_access_token
from stagedoor.cli import COMPONENTS
from stagedoor.connections import make_pool
from stagedoor.embedded import EmbeddedPostgres, EmbeddedRedis, with_database
from stagedoor.hot_http import make_site
from stagedoor.keys import KeyRing
from stagedoor.migrate import migrate_url
from stagedoor.settings import Settings, load_settings

ADMIN_KEY = "test-admin-key-" + "x" * 16


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
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def make_settings(redis_url: str, database_url: str, redis_prefix: str, tmp_path: Path) -> Callable[..., Settings]:
    keys_dir = tmp_path / "keys"

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "database_url": database_url,
            "redis_key_prefix": redis_prefix,
            "admin_api_key": ADMIN_KEY,
            "queue_token_secret": secrets.token_urlsafe(32),
            "signing_keys_dir": str(keys_dir),
            "cookie_secure": False,
            "environment": "test",
            "db_pool_min_size": 1,
            "db_pool_max_size": 10,
            "hot_http": os.environ.get("STAGEDOOR_TEST_HOT_HTTP", "true").lower() not in ("false", "0", "no"),
        }
        values.update(overrides)
        return load_settings(environ={}, **values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool built like the services' (stagedoor.connections.make_pool: json codec on) from this
    test's ``settings`` (a directory's conftest may override ``settings``); ``db`` is a bare one."""
    pool = await make_pool(settings, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


class HotTestServer(TestServer):
    """pytest-aiohttp's TestServer listening as the services do in production: through HotSite,
    or with ``hot=False`` through aiohttp's own TCPSite (stagedoor.hot_http.make_site)."""

    def __init__(self, app: Any, *, hot: bool = True, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._hot = hot

    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self._loop = loop
        self.runner = await self._make_runner(handler_cancellation=True, **kwargs)
        await self.runner.setup()
        self.site = make_site(self.runner, self.host, self.port or 0, hot=self._hot)
        await self.site.start()
        self.port = self.site.port
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")


@pytest.fixture
def service_client(aiohttp_client: Any, settings: Settings, keyring: KeyRing) -> Callable[..., Any]:
    """``await service_client("ticketing")`` -> a pytest-aiohttp TestClient on that app, served
    through HotSite unless the settings say ``hot_http=False``."""

    async def start(name: str, settings_: Settings | None = None, keyring_: KeyRing | None = None) -> Any:
        chosen = settings_ or settings
        app = COMPONENTS[name].create_app(chosen, keyring_ or keyring)
        return await aiohttp_client(HotTestServer(app, hot=chosen.hot_http))

    return start


class TestUser:
    """A user row inserted directly (for tests of other features) and a bearer token for it."""

    def __init__(self, user_id: str, email: str, roles: list[str], token: str) -> None:
        self.id = user_id
        self.email = email
        self.roles = roles
        self.token = token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def create_user(db: asyncpg.Pool, keyring: KeyRing) -> Callable[..., Any]:
    """``await create_user(roles=["organizer"])`` -> TestUser with a valid access token."""

    async def create(roles: list[str] | None = None, email: str | None = None, name: str = "Test User") -> TestUser:
        roles = roles or ["customer"]
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.test"
        user_id = await db.fetchval(
            "INSERT INTO users (email, password_hash, name, roles) VALUES ($1, 'x', $2, $3) RETURNING id::text",
            email, name, roles,
        )
        token = mint_access_token(keyring, subject=user_id, roles=roles, ttl_s=600)
        return TestUser(user_id, email, roles, token)

    return create


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


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
