"""OAuth2 token endpoint logic (RFC 6749): password, refresh_token and client_credentials grants.

Errors here are not problem+json: RFC 6749 section 5.2 prescribes
``{"error": ..., "error_description": ...}`` with 400 (401 + ``WWW-Authenticate`` for
``invalid_client``). The route renders :class:`OAuthError` that way.

- password: throttled per account and IP before any hash is checked; the same
  ``invalid_grant`` for an unknown email, a wrong password and a blocked account (no
  account enumeration; an unknown email still costs one argon2 verification).
- refresh_token: rotates (the presented token is spent, a new one returned); a spent or
  revoked token revokes its whole family and the user's live access tokens.
- client_credentials: registered API clients authenticate with HTTP Basic or form
  fields; scopes requested must be a subset of the client's (default: all of them).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, get_args

import msgspec

from stagedoor.auth import ROLES, SubjectKind, mint_access_token
from stagedoor.keys import KeyRing
from ticketing.accounts.accounts import Accounts
from ticketing.accounts.oauth_store import ClientStore, RefreshOutcome
from ticketing.accounts.throttle import LoginThrottle

logger = logging.getLogger(__name__)

GRANT_TYPES = ("password", "refresh_token", "client_credentials")
# Scopes an API client may hold. "admin" stands for every other scope (SRE automation).
ClientScope = Literal["events:write", "rooms:write", "checkin", "sales:read", "orders:read", "admin"]
CLIENT_SCOPES: tuple[ClientScope, ...] = get_args(ClientScope)
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")  # RFC 6749 3.3 scope-token


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, *, basic_challenge: bool = False) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.basic_challenge = basic_challenge


class TokenResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str | None = None
    scope: str | None = None


def parse_scope(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    items = raw.split(" ")
    if len(items) > 32 or not all(_SCOPE_TOKEN.match(s) for s in items):
        raise OAuthError("invalid_scope", "scope must be space-separated scope tokens (at most 32)")
    return sorted(set(items))


class TokenIssuer:
    def __init__(self, *, accounts: Accounts, clients: ClientStore, throttle: LoginThrottle, keyring: KeyRing,
                 access_ttl_s: int, refresh_ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self.accounts = accounts
        self.clients = clients
        self.throttle = throttle
        self.keyring = keyring
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._clock = clock

    def _access_token(self, subject: str, roles: list[str], now: float, *, kind: SubjectKind = "user",
                      scope: str = "", on_behalf_of: str | None = None) -> str:
        return mint_access_token(self.keyring, subject=subject, roles=[r for r in roles if r in ROLES],
                                 ttl_s=self.access_ttl_s, now=now, kind=kind, scope=scope, on_behalf_of=on_behalf_of)

    async def password_grant(self, *, username: str, password: str, ip: str) -> TokenResponse:
        if not username or not password:
            raise OAuthError("invalid_request", "username and password are required")
        await self.throttle.check(username, ip)  # LoginThrottled -> 429 before any hashing
        users = self.accounts.users
        passwords = self.accounts.passwords
        creds = await users.credentials(username)
        if creds is None:
            ok = await passwords.verify_unknown(password)
        else:
            ok = await passwords.verify(creds.password_hash, password)
        if not ok or creds is None or creds.blocked:
            await self.throttle.record_failure(username, ip)
            raise OAuthError("invalid_grant", "invalid email or password")
        await self.throttle.record_success(username)
        new_hash = await passwords.hash(password) if passwords.needs_rehash(creds.password_hash) else None
        await users.record_login(creds.id, new_hash)
        clock = self._clock()
        now = datetime.fromtimestamp(clock, UTC)
        refresh = await self.accounts.refresh_tokens.issue(creds.id, now=now, ttl_s=self.refresh_ttl_s)
        logger.info("user_login", extra={"user_id": creds.id})
        return TokenResponse(token_type="Bearer", access_token=self._access_token(creds.id, creds.roles, clock),
                             expires_in=self.access_ttl_s, refresh_token=refresh)

    async def refresh_grant(self, *, refresh_token: str) -> TokenResponse:
        if not refresh_token:
            raise OAuthError("invalid_request", "refresh_token is required")
        if len(refresh_token) > 256:
            raise OAuthError("invalid_grant", "invalid refresh token")
        clock = self._clock()
        now = datetime.fromtimestamp(clock, UTC)
        store = self.accounts.refresh_tokens
        rotation = await store.rotate(refresh_token, now=now, ttl_s=self.refresh_ttl_s)
        if rotation.outcome is RefreshOutcome.REUSED:
            assert rotation.user_id is not None
            logger.warning("refresh_token_reused", extra={"user_id": rotation.user_id,
                                                           "family_id": rotation.family_id})
            await self.accounts.revoke_access("user", rotation.user_id)
            raise OAuthError("invalid_grant", "refresh token already used; the session has been revoked")
        if rotation.outcome is not RefreshOutcome.ROTATED:
            raise OAuthError("invalid_grant", "invalid or expired refresh token")
        assert rotation.user_id is not None and rotation.token is not None and rotation.family_id is not None
        state = await self.accounts.users.auth_state(rotation.user_id)
        if state is None or state[1]:
            await store.revoke_family(rotation.family_id, now=now)
            raise OAuthError("invalid_grant", "invalid or expired refresh token")
        roles, _ = state
        return TokenResponse(token_type="Bearer", access_token=self._access_token(rotation.user_id, roles, clock),
                             expires_in=self.access_ttl_s, refresh_token=rotation.token)

    async def client_credentials_grant(self, *, client_id: str, client_secret: str, scope: list[str] | None,
                                       used_basic: bool) -> TokenResponse:
        if not _CLIENT_ID.match(client_id) or not client_secret or len(client_secret) > 256:
            raise OAuthError("invalid_client", "client authentication failed", 401, basic_challenge=used_basic)
        client = await self.clients.authenticate(client_id, client_secret)
        if client is None:
            raise OAuthError("invalid_client", "client authentication failed", 401, basic_challenge=used_basic)
        granted = sorted(client.scopes) if scope is None else scope
        if not set(granted) <= set(client.scopes):
            raise OAuthError("invalid_scope", "requested scope exceeds the client's registered scopes")
        roles: list[str] = []
        if client.owner_id:
            state = await self.accounts.users.auth_state(client.owner_id)
            if state is None or state[1]:
                raise OAuthError("invalid_client", "the client's owner account is blocked or gone", 401,
                                 basic_challenge=used_basic)
            roles = state[0]
        elif "admin" in granted:
            roles = ["admin"]
        clock = self._clock()
        token = self._access_token(client.client_id, roles, clock, kind="client", scope=" ".join(granted),
                                   on_behalf_of=client.owner_id)
        return TokenResponse(token_type="Bearer", access_token=token, expires_in=self.access_ttl_s,
                             scope=" ".join(granted) or None)

    async def revoke_client(self, client_id: str) -> bool:
        clock = self._clock()
        client = await self.clients.revoke(client_id, now=datetime.fromtimestamp(clock, UTC))
        if client is None:
            return False
        await self.accounts.revoke_access("client", client_id)
        logger.info("client_revoked", extra={"client_id": client_id})
        return True
