"""Seat holds while the sale's Redis refuses writes (full, or a replica mid-failover): the shop
answers the 503 it answers for an unreachable Redis (inventory-unavailable, Retry-After), holds
nothing, and sells again once Redis takes writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from stagedoor.embedded import EmbeddedRedis

REFUSE = {"out-of-memory": (("CONFIG", "SET", "maxmemory", 1), ("CONFIG", "SET", "maxmemory", 0)),
          "read-only": (("REPLICAOF", "127.0.0.1", "1"), ("REPLICAOF", "NO", "ONE"))}


@pytest.mark.parametrize("refusal", sorted(REFUSE))
async def test_a_hold_meeting_a_refusing_redis_is_a_503_and_holds_nothing(
        refusal: str, shop: Any, make_event: Any, create_user: Any, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    control = redis_asyncio.Redis.from_url(server.url)
    try:
        client = await shop(redis_url=server.url)
        event = await make_event(client)
        fan = await create_user()
        path = f"/api/events/{event['id']}/holds"
        assert (await client.get(f"/api/events/{event['id']}/seats")).status == 200  # inventory loaded
        refuse, restore = REFUSE[refusal]
        await control.execute_command(*refuse)
        try:
            resp = await client.post(path, json={"seats": ["s1"]}, headers=fan.headers)
            assert resp.status == 503 and resp.content_type == "application/problem+json"
            assert "Retry-After" in resp.headers
            assert (await resp.json())["type"] == "/problems/inventory-unavailable"
        finally:
            await control.execute_command(*restore)
        held = await client.post(path, json={"seats": ["s1"]}, headers=fan.headers)
        assert held.status == 201, await held.text()  # s1 was never held by the refused attempt
    finally:
        await control.aclose()
        server.stop()
