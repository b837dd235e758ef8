"""Users and their credentials.

- ``create_user`` (a fixture): a user row inserted directly, for tests of other features, with a
  valid access token (``TestUser.headers``).
- The accounts HTTP helpers: ``register``, ``login``, ``token_request`` against a ticketing
  client, ``new_email``, ``GOOD_PASSWORD``, and ``FAST_ACCOUNTS`` (cheap argon2 settings).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from stagedoor.auth import mint_access_token
from stagedoor.keys import KeyRing

GOOD_PASSWORD = "violet-otter-harbour-42"

FAST_ACCOUNTS = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 1024,
    "argon2_parallelism": 1,
    "rate_limits_enabled": False,  # the per-request limits have their own tests (tests/abuse)
    "trusted_proxies": "127.0.0.1/32,::1/128",  # lets a test pick its client IP via X-Forwarded-For
}


class TestUser:
    """A user row inserted directly (for tests of other features) and a bearer token for it."""

    __test__ = False  # a builder, not a test class

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
