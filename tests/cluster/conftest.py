"""Fixtures for the Redis Cluster tests: settings and clients on the session's 3-master cluster
(tests/support/servers.py ``redis_cluster_url``); PostgreSQL as everywhere else (per-test database)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio.cluster import RedisCluster

from stagedoor.settings import Settings


@pytest.fixture
def cluster_settings(make_settings: Callable[..., Settings], redis_cluster_url: str) -> Settings:
    return make_settings(redis_url=redis_cluster_url, redis_cluster=True, rate_limits_enabled=False)


@pytest.fixture
async def cluster_client(redis_cluster_url: str) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster_url)
    await client.initialize()  # learn the slot map now (keyslot / get_node_from_key need it)
    try:
        yield client
    finally:
        await client.aclose()
