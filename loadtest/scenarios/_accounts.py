"""Accounts for the shop scenarios (not a scenario itself): one organizer and ``fans`` customers,
inserted straight into PostgreSQL, with access tokens minted from the run's key ring (the same
tokens the services verify). Registration and login have their own costs and limits; these
scenarios measure holds and purchases."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from loadtest.scenario import BenchEnv
from stagedoor.auth import mint_access_token
from stagedoor.keys import KeyRing

TOKEN_TTL_S = 3600


async def bench_accounts(env: BenchEnv, fans: int, label: str) -> tuple[str, list[str]]:
    """(the organizer's access token, one customer access token per fan)."""
    conn = await asyncpg.connect(env.database_url)
    try:
        rows = await conn.fetch(
            "INSERT INTO users (email, password_hash, name, roles) "
            "SELECT $2 || '-' || g || '-' || gen_random_uuid() || '@example.test', 'x', 'Bench', "
            "CASE WHEN g = 0 THEN ARRAY['organizer'] ELSE ARRAY['customer'] END FROM generate_series(0, $1) g "
            "RETURNING id::text AS id, roles", fans, label)
    finally:
        await conn.close()
    keyring = KeyRing.from_dir(Path(env.signing_keys_dir))
    organizer = next(r["id"] for r in rows if "organizer" in r["roles"])
    return (mint_access_token(keyring, subject=organizer, roles=["organizer"], ttl_s=TOKEN_TTL_S),
            [mint_access_token(keyring, subject=r["id"], roles=["customer"], ttl_s=TOKEN_TTL_S)
             for r in rows if "organizer" not in r["roles"]])
