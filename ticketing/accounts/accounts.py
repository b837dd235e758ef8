"""Accounts domain: registration, profiles, and the admin's role and block changes.

Blocking a user or changing their roles revokes the access tokens they hold (a revocation
marker in Redis, checked by ``stagedoor.auth``), so the change takes effect at once rather
than when those tokens expire; blocking also revokes every refresh token (they must sign
in again, which a blocked account cannot).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from stagedoor.auth import ROLES, Principal, SubjectKind, revoke_subject
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from ticketing.accounts.errors import InvalidEmail, InvalidRoles, NotAUserAccount, UserNotFound, WeakPassword
from ticketing.accounts.history import decode_cursor, encode_cursor
from ticketing.accounts.oauth_store import RefreshTokenStore
from ticketing.accounts.passwords import Passwords, password_problems
from ticketing.accounts.store import User, UserStore

logger = logging.getLogger(__name__)

MAX_EMAIL_CHARS = 254
_EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")

Clock = Callable[[], float]


class UserPage(msgspec.Struct, kw_only=True):
    items: list[User]
    next_cursor: str | None


def normalize_email(raw: str) -> str:
    """Trimmed, domain lower-cased; raises InvalidEmail. Uniqueness is case-insensitive in SQL."""
    email = raw.strip()
    if len(email) > MAX_EMAIL_CHARS:
        raise InvalidEmail(f"email must be at most {MAX_EMAIL_CHARS} characters")
    if not _EMAIL_RE.match(email):
        raise InvalidEmail("not a valid email address")
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InvalidRoles(f"unknown role(s): {', '.join(unknown)} (known: {', '.join(ROLES)})",
                           errors=[{"field": "roles", "message": "unknown role"}])
    if not roles:
        raise InvalidRoles("at least one role is required", errors=[{"field": "roles", "message": "empty"}])
    return sorted(set(roles))


class Accounts:
    def __init__(self, *, users: UserStore, refresh_tokens: RefreshTokenStore, passwords: Passwords,
                 redis: Redis, keys: RedisKeys, settings: Settings, clock: Clock = time.time) -> None:
        self.users = users
        self.refresh_tokens = refresh_tokens
        self.passwords = passwords
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def register(self, *, email: str, password: str, name: str, roles: list[str] | None = None) -> User:
        email = normalize_email(email)
        problems = password_problems(password, min_length=self._settings.password_min_length, email=email)
        if problems:
            raise WeakPassword(problems)
        password_hash = await self.passwords.hash(password)
        user = await self.users.create(email=email, password_hash=password_hash, name=name.strip(),
                                       roles=check_roles(roles or ["customer"]))
        logger.info("user_registered", extra={"user_id": user.id})
        return user

    async def profile(self, principal: Principal) -> User:
        if principal.kind != "user":
            raise NotAUserAccount("this endpoint needs a user's access token")
        user = await self.users.by_id(principal.id)
        if user is None:
            raise UserNotFound("the account no longer exists")
        return user

    async def list_users(self, *, limit: int, email_prefix: str | None, cursor: str | None) -> UserPage:
        """Admin listing, newest first, with an opaque keyset cursor."""
        after_at, after_id = decode_cursor(cursor)
        after = (after_at, after_id) if after_at is not None and after_id is not None else None
        users = await self.users.list(limit=limit + 1, email_prefix=email_prefix, after=after)
        page = users[:limit]
        more = len(users) > limit
        return UserPage(items=page, next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None)

    async def get(self, user_id: str) -> User:
        user = await self.users.by_id(user_id)
        if user is None:
            raise UserNotFound(f"no user {user_id}")
        return user

    async def update(self, user_id: str, *, roles: list[str] | None = None, blocked: bool | None = None,
                     name: str | None = None) -> User:
        """Admin change of roles / block / name; revokes tokens whose claims it invalidates."""
        before = await self.get(user_id)
        new_roles = check_roles(roles) if roles is not None else None
        user = await self.users.update(user_id, roles=new_roles, blocked=blocked,
                                       name=name.strip() if name is not None else None)
        if user is None:
            raise UserNotFound(f"no user {user_id}")
        now = self.now()
        if blocked and not before.blocked:
            revoked = await self.refresh_tokens.revoke_user(user.id, now=now)
            logger.info("user_blocked", extra={"user_id": user.id, "refresh_tokens_revoked": revoked})
        if (blocked and not before.blocked) or (new_roles is not None and new_roles != sorted(before.roles)):
            await self.revoke_access("user", user.id)
        return user

    async def revoke_access(self, kind: SubjectKind, subject: str) -> None:
        """Refuse the subject's access tokens issued up to now (see stagedoor.auth)."""
        try:
            await revoke_subject(self._redis, self._keys, kind, subject,
                                 ttl_s=self._settings.access_token_ttl_s,
                                 at_ms=int(self._clock() * 1000))
        except (RedisError, OSError, TimeoutError):
            # The change is committed; without Redis the old tokens live out their (short) lifetime.
            logger.warning("revocation_marker_failed", extra={"kind": kind})
