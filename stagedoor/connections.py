"""Redis and PostgreSQL clients built from the settings, and their readiness probes."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import asyncpg
import redis.asyncio as redis_asyncio
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from stagedoor.settings import Settings, require


def make_redis(settings: Settings, **overrides: Any) -> Redis:
    """The services' Redis client: one pooled client, or with ``STAGEDOOR_REDIS_CLUSTER=true`` a
    ``RedisCluster`` (same command API; every key a script or pipeline command touches is hash-tagged
    per room / event, so each lands on one slot and the client routes it to that slot's master)."""
    require(settings, "redis_url")
    assert settings.redis_url is not None
    if settings.redis_cluster:
        # not a Redis subclass, but the same command API (what the services call on app[REDIS])
        return cast(Redis, make_redis_cluster(settings, **overrides))
    options: dict[str, Any] = {
        "max_connections": settings.redis_max_connections,
        "timeout": settings.dependency_timeout_s * 5,  # wait for a free pooled connection
        "socket_connect_timeout": settings.dependency_timeout_s,
        "socket_timeout": max(5.0, settings.dependency_timeout_s * 5),
        "health_check_interval": 30,
    }
    options.update(overrides)
    pool = BlockingConnectionPool.from_url(settings.redis_url, **options)
    return redis_asyncio.Redis(connection_pool=pool)


def make_redis_cluster(settings: Settings, **overrides: Any) -> RedisCluster:
    """A cluster client from any one node's URL. It differs from the pooled client in one way: a
    node's pool does not queue callers beyond ``redis_max_connections``, it raises
    MaxConnectionsError (the batchers keep the number of calls in flight far below that)."""
    assert settings.redis_url is not None
    options: dict[str, Any] = {
        "max_connections": settings.redis_max_connections,
        "socket_connect_timeout": settings.dependency_timeout_s,
        "socket_timeout": max(5.0, settings.dependency_timeout_s * 5),
        "health_check_interval": 30,
    }
    options.update(overrides)
    return RedisCluster.from_url(settings.redis_url, **options)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


async def redis_run_id(client: Any) -> str:
    """The server's ``run_id`` (changes when Redis restarts); on a cluster, every master's, so a
    restart of any one of them is noticed (its share of the keys may be gone)."""
    if is_cluster(client):
        infos = await client.info("server", target_nodes=RedisCluster.PRIMARIES)
        return ",".join(sorted(f"{node}={info.get('run_id')}" for node, info in infos.items()))
    info = await client.info("server")
    return str(info.get("run_id"))


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook: skip asyncpg's default reset query.

    The default (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``) costs one more
    round trip on every release, i.e. on every query. Pooled connections never take session
    state (no SET, LISTEN, advisory locks or cursors outside a transaction: migrations use their
    own connection), and asyncpg still rolls back a transaction left open before calling this."""


async def make_pool(settings: Settings, **overrides: Any) -> asyncpg.Pool:
    require(settings, "database_url")
    options: dict[str, Any] = {
        "min_size": min(settings.db_pool_min_size, settings.db_pool_max_size),
        "max_size": settings.db_pool_max_size,
        "command_timeout": settings.db_command_timeout_s,
        "init": _init_connection,
        "reset": _keep_session,
        "timeout": max(5.0, settings.dependency_timeout_s * 5),
    }
    options.update(overrides)
    pool = await asyncpg.create_pool(settings.database_url, **options)
    assert pool is not None
    return pool


async def redis_ready(client: Redis, timeout_s: float) -> bool:
    try:
        return bool(await asyncio.wait_for(client.ping(), timeout_s))
    except (TimeoutError, OSError, redis_asyncio.RedisError):
        return False


async def postgres_ready(pool: asyncpg.Pool, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            async with pool.acquire(timeout=timeout_s) as conn:
                return bool(await conn.fetchval("SELECT 1") == 1)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
