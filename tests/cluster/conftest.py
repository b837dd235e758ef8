"""Fixtures for the Redis Cluster tests: settings and clients on the session's 3-master cluster
(tests/conftest.py ``redis_cluster_url``); PostgreSQL as everywhere else (per-test database)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

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


def seat_map(seats: int, per_row: int = 10) -> dict[str, Any]:
    rows = [{"label": f"R{r + 1}", "seats": [{"number": str(k + 1), "tier": "A"}
                                             for k in range(min(per_row, seats - r * per_row))]}
            for r in range((seats + per_row - 1) // per_row)]
    return {"sections": [{"name": "S1", "rows": rows}]}


def event_body(seats: int) -> dict[str, Any]:
    return {"title": "Cluster concert", "category": "concert", "currency": "EUR",
            "venue": {"name": "Cluster Hall", "city": "Shardville", "address": "1 Slot St"},
            "starts_at": "2030-06-01T19:00:00Z", "ends_at": "2030-06-01T22:00:00Z",
            "tiers": [{"code": "A", "name": "Stalls", "price": 2500}], "seat_map": seat_map(seats),
            "max_tickets_per_order": 4}
