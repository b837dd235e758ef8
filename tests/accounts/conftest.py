"""Fixtures for the accounts tests: a ticketing client with cheap argon2 parameters."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from stagedoor.settings import Settings

GOOD_PASSWORD = "violet-otter-harbour-42"

FAST_ACCOUNTS = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 1024,
    "argon2_parallelism": 1,
    "rate_limits_enabled": False,  # the per-request limits have their own tests (tests/abuse)
    "trusted_proxies": "127.0.0.1/32,::1/128",  # lets a test pick its client IP via X-Forwarded-For
}


@pytest.fixture
def accounts_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return make_settings(**{**FAST_ACCOUNTS, **overrides})
    return make


@pytest.fixture
async def client(service_client: Callable[..., Any], accounts_settings: Callable[..., Settings]) -> Any:
    return await service_client("ticketing", accounts_settings())


def new_email() -> str:
    return f"fan-{uuid.uuid4().hex[:10]}@example.test"


async def register(client: Any, email: str | None = None, password: str = GOOD_PASSWORD,
                   name: str = "Fan") -> dict[str, Any]:
    resp = await client.post("/api/users", json={"email": email or new_email(), "password": password, "name": name})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def token_request(client: Any, form: dict[str, str], headers: dict[str, str] | None = None) -> Any:
    return await client.post("/oauth/token", data=form, headers=headers or {})


async def login(client: Any, email: str, password: str = GOOD_PASSWORD, ip: str | None = None) -> Any:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return await token_request(client, {"grant_type": "password", "username": email, "password": password}, headers)
