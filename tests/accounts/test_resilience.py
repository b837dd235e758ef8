"""Races and failure modes: one winner for a contested email; Redis down -> logins and token
checks fail open (PostgreSQL stays the source of truth), with clear answers, never a 500."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stagedoor.embedded import EmbeddedRedis
from tests.support.accounts import GOOD_PASSWORD, login, new_email, register


async def test_concurrent_registrations_of_one_email_have_exactly_one_winner(client: Any, db: Any) -> None:
    email = new_email()
    body = {"email": email, "password": GOOD_PASSWORD, "name": "Twin"}
    variants = [dict(body, email=email.upper() if i % 2 else email) for i in range(8)]
    responses = await asyncio.gather(*(client.post("/api/users", json=v) for v in variants))
    assert sorted(r.status for r in responses) == [201] + [409] * 7
    assert await db.fetchval("SELECT count(*) FROM users WHERE lower(email) = lower($1)", email) == 1


async def test_control_without_the_unique_index_the_race_creates_duplicates(db: Any) -> None:
    """The control for the test above: the same race against a check-then-insert without the
    unique index creates more than one account, so the index is what makes the winner unique."""
    await db.execute("CREATE TABLE naive_users (email text)")
    try:
        async def naive_register(email: str) -> None:
            async with db.acquire() as conn:
                exists = await conn.fetchval("SELECT count(*) FROM naive_users WHERE email = $1", email)
                await asyncio.sleep(0.01)  # the window every check-then-write has
                if not exists:
                    await conn.execute("INSERT INTO naive_users VALUES ($1)", email)

        await asyncio.gather(*(naive_register("twin@example.test") for _ in range(4)))
        assert await db.fetchval("SELECT count(*) FROM naive_users") > 1
    finally:
        await db.execute("DROP TABLE naive_users")


async def test_with_redis_down_sign_in_and_token_checks_fail_open(
        service_client: Any, accounts_settings: Any, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        client = await service_client("ticketing", accounts_settings(redis_url=server.url, revocation_cache_s=0,
                                                                     dependency_timeout_s=0.5))
        email = new_email()
        await register(client, email)
        token = (await (await login(client, email)).json())["access_token"]
        server.stop()
        # no throttle counters and no revocation markers: PostgreSQL still decides who signs in
        resp = await login(client, email)
        assert resp.status == 200, await resp.text()
        assert (await login(client, email, "wrong-password-1")).status == 400
        resp = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200
    finally:
        server.stop()
