"""Blocking a user stops their live access tokens on every service, not only where the admin
clicked: ticketing writes a revocation marker to Redis, and every service (here the admission
API an organizer scripts) reads it, caching a "not revoked" answer at most
``STAGEDOOR_REVOCATION_CACHE_S`` (1 s by default)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stagedoor.auth import revoke_subject
from stagedoor.redis_keys import RedisKeys
from stagedoor.web import KEYS, REDIS


async def test_blocking_an_organizer_stops_their_token_on_ticketing_and_the_admin_api(
        service_client: Any, make_settings: Any, create_user: Any, admin_headers: Any) -> None:
    settings = make_settings(rate_limits_enabled=False)  # default revocation cache (1 s)
    ticketing = await service_client("ticketing", settings)
    admission = await service_client("admission", settings)
    organizer = await create_user(roles=["organizer"])
    assert (await admission.get("/admin/rooms", headers=organizer.headers)).status == 200
    assert (await ticketing.get("/api/users/me", headers=organizer.headers)).status == 200

    resp = await ticketing.patch(f"/api/users/{organizer.id}", json={"blocked": True}, headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["blocked"] is True

    assert (await ticketing.get("/api/users/me", headers=organizer.headers)).status == 401
    resp = await ticketing.post("/api/events/1/holds", json={"seats": ["s1"]}, headers=organizer.headers)
    assert resp.status == 401
    resp = await admission.get("/admin/rooms", headers=organizer.headers)
    assert resp.status == 401 and "revoked" in (await resp.json())["detail"]


async def test_a_block_written_by_another_process_is_seen_once_the_cache_window_passes(
        service_client: Any, make_settings: Any, create_user: Any, redis_client: Any) -> None:
    """The marker is written straight to Redis, as another process's block would be: this
    process has just cached "not revoked" and must re-read within the cache window."""
    settings = make_settings(rate_limits_enabled=False)
    assert settings.revocation_cache_s == 1.0
    admission = await service_client("admission", settings)
    organizer = await create_user(roles=["organizer"])
    assert (await admission.get("/admin/rooms", headers=organizer.headers)).status == 200  # cached: not revoked

    key = RedisKeys(settings.redis_key_prefix).revoked_subject("user", organizer.id)
    await redis_client.set(key, int(time.time() * 1000) + 1, px=600_000)
    statuses = []
    for _ in range(100):  # bounded poll, generous for a loaded machine; the window itself is 1 s
        statuses.append((await admission.get("/admin/rooms", headers=organizer.headers)).status)
        if statuses[-1] == 401:
            break
        await asyncio.sleep(0.1)
    assert statuses[-1] == 401, statuses
    assert set(statuses[:-1]) <= {200}


async def test_revoking_updates_the_local_cache_at_once(service_client: Any, make_settings: Any,
                                                        create_user: Any) -> None:
    """In the process that blocks, the cached "not revoked" answer is replaced immediately."""
    settings = make_settings(rate_limits_enabled=False, revocation_cache_s=60)
    admission = await service_client("admission", settings)
    organizer = await create_user(roles=["organizer"])
    assert (await admission.get("/admin/rooms", headers=organizer.headers)).status == 200
    app = admission.app
    await revoke_subject(app[REDIS], app[KEYS], "user", organizer.id, ttl_s=600)
    assert (await admission.get("/admin/rooms", headers=organizer.headers)).status == 401
