"""PostgreSQL store of refresh tokens and API clients (OAuth2). Tokens and client secrets are
random and high-entropy, so they are stored as sha256 digests only (a database leak yields
no usable credential); lookups are by digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta
from enum import Enum

import asyncpg
import msgspec

REFRESH_PREFIX = "rt_"
CLIENT_ID_PREFIX = "cl_"
CLIENT_SECRET_PREFIX = "cs_"


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class RefreshOutcome(Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REUSED = "reused"  # already used or revoked: the whole family is now revoked


class Rotation(msgspec.Struct, kw_only=True):
    outcome: RefreshOutcome
    user_id: str | None = None
    family_id: str | None = None
    token: str | None = None


class Client(msgspec.Struct, kw_only=True):
    client_id: str
    name: str
    owner_id: str | None
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


INSERT_REFRESH = """
INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5)
"""
LOCK_REFRESH = """
SELECT id, family_id::text AS family_id, user_id::text AS user_id, expires_at, used_at, revoked_at
FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE
"""
MARK_USED = "UPDATE refresh_tokens SET used_at = $2 WHERE id = $1"
REVOKE_FAMILY = "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL"
REVOKE_USER_TOKENS = "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL"

_CLIENT_COLUMNS = "client_id, name, owner_id::text AS owner_id, scopes, created_at, revoked_at"
INSERT_CLIENT = f"""
INSERT INTO api_clients (client_id, secret_hash, name, owner_id, scopes) VALUES ($1, $2, $3, $4, $5)
RETURNING {_CLIENT_COLUMNS}
"""
SELECT_CLIENT_SECRET = f"SELECT secret_hash, {_CLIENT_COLUMNS} FROM api_clients WHERE client_id = $1"
SELECT_CLIENT = f"SELECT {_CLIENT_COLUMNS} FROM api_clients WHERE client_id = $1"
REVOKE_CLIENT = f"""
UPDATE api_clients SET revoked_at = coalesce(revoked_at, $2) WHERE client_id = $1
RETURNING {_CLIENT_COLUMNS}
"""


class RefreshTokenStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def issue(self, user_id: str, *, now: datetime, ttl_s: int, family_id: str | None = None) -> str:
        token = REFRESH_PREFIX + secrets.token_urlsafe(32)
        family = uuid.UUID(family_id) if family_id else uuid.uuid4()
        await self._pool.execute(INSERT_REFRESH, digest(token), family, uuid.UUID(user_id), now,
                                 now + timedelta(seconds=ttl_s))
        return token

    async def rotate(self, token: str, *, now: datetime, ttl_s: int) -> Rotation:
        """Use a refresh token once: mark it used and issue its successor in one transaction.

        Presenting a used or revoked token revokes its whole family (reuse detection); the
        row lock makes two concurrent uses of one token one rotation and one reuse.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LOCK_REFRESH, digest(token))
            if row is None:
                return Rotation(outcome=RefreshOutcome.UNKNOWN)
            family_id, user_id = row["family_id"], row["user_id"]
            if row["used_at"] is not None or row["revoked_at"] is not None:
                await conn.execute(REVOKE_FAMILY, uuid.UUID(family_id), now)
                return Rotation(outcome=RefreshOutcome.REUSED, user_id=user_id, family_id=family_id)
            if row["expires_at"] <= now:
                return Rotation(outcome=RefreshOutcome.EXPIRED, user_id=user_id, family_id=family_id)
            await conn.execute(MARK_USED, row["id"], now)
            successor = REFRESH_PREFIX + secrets.token_urlsafe(32)
            await conn.execute(INSERT_REFRESH, digest(successor), uuid.UUID(family_id), uuid.UUID(user_id), now,
                               now + timedelta(seconds=ttl_s))
        return Rotation(outcome=RefreshOutcome.ROTATED, user_id=user_id, family_id=family_id, token=successor)

    async def revoke_family(self, family_id: str, *, now: datetime) -> None:
        await self._pool.execute(REVOKE_FAMILY, uuid.UUID(family_id), now)

    async def revoke_user(self, user_id: str, *, now: datetime) -> int:
        status = await self._pool.execute(REVOKE_USER_TOKENS, uuid.UUID(user_id), now)
        return int(status.split()[-1])


class ClientStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def register(self, *, name: str, owner_id: str | None, scopes: list[str]) -> tuple[Client, str]:
        client_id = CLIENT_ID_PREFIX + secrets.token_hex(12)
        secret = CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)
        row = await self._pool.fetchrow(INSERT_CLIENT, client_id, digest(secret), name,
                                        uuid.UUID(owner_id) if owner_id else None, sorted(set(scopes)))
        assert row is not None  # INSERT ... RETURNING
        return Client(**dict(row)), secret

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client when the secret matches and it is not revoked; None otherwise."""
        row = await self._pool.fetchrow(SELECT_CLIENT_SECRET, client_id)
        expected = bytes(row["secret_hash"]) if row else digest("no-such-client")
        matches = hmac.compare_digest(expected, digest(secret))
        if row is None or not matches or row["revoked_at"] is not None:
            return None
        values = dict(row)
        values.pop("secret_hash")
        return Client(**values)

    async def get(self, client_id: str) -> Client | None:
        row = await self._pool.fetchrow(SELECT_CLIENT, client_id)
        return Client(**dict(row)) if row else None

    async def revoke(self, client_id: str, *, now: datetime) -> Client | None:
        row = await self._pool.fetchrow(REVOKE_CLIENT, client_id, now)
        return Client(**dict(row)) if row else None
