"""Fixtures of the abuse-defence tests: settings without a database (the tiny app whose routes
call the mechanisms as the service handlers do is tests/support/abuse.py ``limited_app``)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from stagedoor.settings import Settings, load_settings


@pytest.fixture
def abuse_settings(redis_url: str, redis_prefix: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "redis_key_prefix": redis_prefix,
            "queue_token_secret": secrets.token_urlsafe(32),
            "admin_api_key": "abuse-admin-key-" + "y" * 16,
            "cookie_secure": False,
            "environment": "test",
        }
        values.update(overrides)
        return load_settings(environ={}, **values)

    return make
