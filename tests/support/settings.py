"""Settings for a test: ``make_settings(**overrides)`` on this test's servers, database and key
prefix; the session's key ring; the admin API key and its headers; a pool built from the settings."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from stagedoor.connections import make_pool
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings, load_settings

ADMIN_KEY = "test-admin-key-" + "x" * 17  # 32 characters: the minimum a real key must have


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


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}
