"""PostgreSQL store of user accounts: the only place that knows the users table's SQL."""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime

import asyncpg
import msgspec

from ticketing.accounts.errors import EmailTaken


class User(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    roles: list[str]
    blocked: bool
    created_at: datetime
    last_login_at: datetime | None = None


class Credentials(msgspec.Struct, kw_only=True):
    id: str
    password_hash: str
    roles: list[str]
    blocked: bool


_COLUMNS = "id::text AS id, email, name, roles, blocked, created_at, last_login_at"

INSERT_USER = f"""
INSERT INTO users (email, password_hash, name, roles) VALUES ($1, $2, $3, $4)
RETURNING {_COLUMNS}
"""
SELECT_BY_ID = f"SELECT {_COLUMNS} FROM users WHERE id = $1"
SELECT_BY_EMAIL = f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower($1)"
SELECT_CREDENTIALS = """
SELECT id::text AS id, password_hash, roles, blocked FROM users WHERE lower(email) = lower($1)
"""
SELECT_AUTH_STATE = "SELECT roles, blocked FROM users WHERE id = $1"
RECORD_LOGIN = """
UPDATE users SET last_login_at = now(), password_hash = coalesce($2, password_hash) WHERE id = $1
"""
UPDATE_USER = f"""
UPDATE users SET
    roles = coalesce($2, roles),
    blocked = coalesce($3, blocked),
    name = coalesce($4, name),
    updated_at = now()
WHERE id = $1
RETURNING {_COLUMNS}
"""
# Admin listing, newest first; $2 = lower-cased email prefix with LIKE wildcards escaped.
LIST_USERS = f"""
SELECT {_COLUMNS} FROM users
WHERE ($2::text IS NULL OR lower(email) LIKE $2 || '%' ESCAPE '\\')
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $1
"""
SET_PASSWORD_AND_ROLES = f"""
UPDATE users SET password_hash = $2, roles = $3, blocked = false, updated_at = now()
WHERE lower(email) = lower($1)
RETURNING {_COLUMNS}
"""


def parse_user_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except (ValueError, AttributeError):
        return None


def _user(row: asyncpg.Record) -> User:
    return User(**dict(row))


class UserStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, *, email: str, password_hash: str, name: str, roles: list[str]) -> User:
        try:
            row = await self._pool.fetchrow(INSERT_USER, email, password_hash, name, roles)
        except asyncpg.UniqueViolationError as exc:
            raise EmailTaken("an account with this email already exists") from exc
        assert row is not None  # INSERT ... RETURNING
        return _user(row)

    async def by_id(self, user_id: str) -> User | None:
        parsed = parse_user_id(user_id)
        if parsed is None:
            return None
        row = await self._pool.fetchrow(SELECT_BY_ID, parsed)
        return _user(row) if row else None

    async def by_email(self, email: str) -> User | None:
        row = await self._pool.fetchrow(SELECT_BY_EMAIL, email)
        return _user(row) if row else None

    async def credentials(self, email: str) -> Credentials | None:
        row = await self._pool.fetchrow(SELECT_CREDENTIALS, email)
        return Credentials(**dict(row)) if row else None

    async def auth_state(self, user_id: str) -> tuple[list[str], bool] | None:
        """(roles, blocked) of a user, None when the user no longer exists."""
        parsed = parse_user_id(user_id)
        if parsed is None:
            return None
        row = await self._pool.fetchrow(SELECT_AUTH_STATE, parsed)
        return (list(row["roles"]), bool(row["blocked"])) if row else None

    async def record_login(self, user_id: str, new_hash: str | None = None) -> None:
        await self._pool.execute(RECORD_LOGIN, uuid.UUID(user_id), new_hash)

    async def update(self, user_id: str, *, roles: list[str] | None = None, blocked: bool | None = None,
                     name: str | None = None) -> User | None:
        parsed = parse_user_id(user_id)
        if parsed is None:
            return None
        row = await self._pool.fetchrow(UPDATE_USER, parsed, roles, blocked, name)
        return _user(row) if row else None

    async def list(self, *, limit: int, email_prefix: str | None = None,
                   after: tuple[datetime, uuid.UUID] | None = None) -> list[User]:
        prefix = None
        if email_prefix:
            prefix = email_prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        after_at, after_id = after if after else (None, None)
        rows = await self._pool.fetch(LIST_USERS, limit, prefix, after_at, after_id)
        return [_user(r) for r in rows]

    async def reset_admin(self, *, email: str, password_hash: str, roles: builtins.list[str]) -> User | None:
        """Set password and roles of an existing account (CLI create-admin on an existing email)."""
        row = await self._pool.fetchrow(SET_PASSWORD_AND_ROLES, email, password_hash, roles)
        return _user(row) if row else None
