"""Who is calling: bearer credentials to a :class:`Principal`.

Three kinds of credential are accepted as ``Authorization: Bearer <token>`` on every
service: the configured admin API key (SRE tooling; compared in constant time), and
EdDSA access tokens issued by the ticketing service's OAuth2 endpoint, for users
(``kind`` "user") and registered API clients (``kind`` "client"). Access tokens are
verified from the shared key ring (each token once per process, then cached until it
expires); what a principal may do is decided by :mod:`stagedoor.policy`, not here.

Revocation within the token lifetime: blocking a user, changing their roles or revoking
an API client writes a "revoked subject" marker to Redis (``RedisKeys.revoked_subject``:
the revocation time in ms, kept for one access-token lifetime). A token issued at or
before that time is refused. Markers are read at most once per
``revocation_cache_s`` per subject and process (a small bounded cache), so the cost is
one Redis GET per active subject per second, not one per request; markers written by
this process take effect here at once. With Redis unreachable the check fails open
(tokens are short-lived; a warning is logged).

The functions are coroutines: ``principal = await require_principal(request)``; what it may
do is asked of :mod:`stagedoor.policy` (``authorize_action`` before any lookup, ``authorize``
after). A principal carries its roles and scopes as data only: it has no role predicates, so
no handler can decide "is admin" without the policy table (which narrows clients by scope).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Literal

import msgspec
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from stagedoor.errors import Forbidden, Unauthorized
from stagedoor.keys import InvalidToken, KeyRing
from stagedoor.redis_keys import RedisKeys
from stagedoor.request_view import RequestView
from stagedoor.web import KEYRING, KEYS, REDIS, SETTINGS

logger = logging.getLogger(__name__)

ACCESS_AUDIENCE = "stagedoor-api"
ROLES = ("customer", "organizer", "admin")
SubjectKind = Literal["user", "client"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller.

    ``id`` is the user id (kind "user"), the client id (kind "client") or "admin-key".
    An API client may act for a user (``on_behalf_of``, its registered owner): it then
    carries the owner's roles, narrowed by its ``scopes`` in the policy module. Roles and
    scopes are data for :mod:`stagedoor.policy`; nothing else reads them to decide access.
    """

    kind: Literal["admin_key", "user", "client"]
    id: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    on_behalf_of: str | None = None

    @property
    def user_id(self) -> str | None:
        """The user whose resources this principal owns (None for the admin key / ownerless clients)."""
        if self.kind == "user":
            return self.id
        return self.on_behalf_of


PRINCIPAL = web.RequestKey("principal", Principal)

ADMIN_KEY_PRINCIPAL = Principal(kind="admin_key", id="admin-key", roles=frozenset({"admin"}))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def mint_access_token(keyring: KeyRing, *, subject: str, roles: Iterable[str], ttl_s: int,
                      kind: SubjectKind = "user", scope: str = "", on_behalf_of: str | None = None,
                      now: float | None = None) -> str:
    """A short-lived access token (the OAuth2 token endpoint and tests use this)."""
    now = time.time() if now is None else now
    claims: dict[str, object] = {
        "aud": ACCESS_AUDIENCE, "sub": subject, "kind": kind, "roles": sorted(set(roles)),
        "iat": int(now), "iat_ms": int(now * 1000), "exp": int(now) + int(ttl_s), "jti": uuid.uuid4().hex,
    }
    if scope:
        claims["scope"] = scope
    if on_behalf_of:
        claims["obo"] = on_behalf_of
    return keyring.sign(claims)


def bearer_token(request: RequestView) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def challenge(error: str | None = None, description: str | None = None) -> str:
    """An RFC 6750 ``WWW-Authenticate`` value."""
    parts = ['Bearer realm="stagedoor"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    return ", ".join(parts)


_challenge = challenge  # backwards-compatible name


# ---------------------------------------------------------------- revocation markers

class _RevocationCache:
    """subject key -> (checked_at monotonic s, revoked_at ms or 0); bounded LRU."""

    def __init__(self, size: int = 50_000) -> None:
        self._entries: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._size = size

    def get(self, key: str, max_age_s: float) -> int | None:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > max_age_s:
            return None
        return entry[1]

    def put(self, key: str, revoked_ms: int) -> None:
        self._entries[key] = (time.monotonic(), revoked_ms)
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


_REVOCATIONS = _RevocationCache()


async def revoke_subject(redis: Redis, keys: RedisKeys, kind: SubjectKind, subject: str, *,
                         ttl_s: int, at_ms: int | None = None) -> int:
    """Refuse every access token of ``subject`` issued up to now; returns the marker time (ms).

    The marker lives ``ttl_s`` (at least one access-token lifetime): older tokens have
    expired by then. Never moves a marker back in time.
    """
    at_ms = now_ms() if at_ms is None else at_ms
    key = keys.revoked_subject(kind, subject)
    previous_raw = await redis.set(key, at_ms, px=ttl_s * 1000 + 5000, get=True)
    previous = int(previous_raw) if previous_raw else 0
    if previous > at_ms:  # a concurrent, later revocation: keep it
        await redis.set(key, previous, px=ttl_s * 1000 + 5000)
        at_ms = previous
    _REVOCATIONS.put(key, at_ms)
    return at_ms


async def _revoked_at_ms(request: web.Request, kind: str, subject: str) -> int:
    app = request.app
    if REDIS not in app or KEYS not in app:
        return 0
    key = app[KEYS].revoked_subject(kind, subject)
    settings = app[SETTINGS]
    cached = _REVOCATIONS.get(key, settings.revocation_cache_s)
    if cached is not None:
        return cached
    try:
        async with asyncio.timeout(settings.dependency_timeout_s):
            raw = await app[REDIS].get(key)
    except (RedisError, OSError, TimeoutError):
        logger.warning("revocation_check_failed_open", extra={"kind": kind})
        _REVOCATIONS.put(key, 0)  # do not retry this subject within the cache window
        return 0
    revoked = int(raw) if raw else 0
    _REVOCATIONS.put(key, revoked)
    return revoked


# ---------------------------------------------------------------- authentication

async def principal_from_token(request: web.Request, token: str) -> Principal:
    """Resolve a bearer token; raises Unauthorized (401 + WWW-Authenticate) when invalid."""
    admin_key = request.app[SETTINGS].admin_api_key
    if admin_key and hmac.compare_digest(token.encode(), admin_key.encode()):
        return ADMIN_KEY_PRINCIPAL
    try:
        claims = request.app[KEYRING].verify(token, ACCESS_AUDIENCE)
    except InvalidToken as exc:
        raise Unauthorized(exc.detail, challenge=challenge("invalid_token", exc.detail)) from None
    kind = claims.get("kind", "user")
    if kind not in ("user", "client"):
        raise Unauthorized("invalid token", challenge=challenge("invalid_token"))
    subject = str(claims["sub"])
    issued_ms = claims.get("iat_ms")
    if not isinstance(issued_ms, int):
        issued_ms = int(claims.get("iat", 0)) * 1000
    revoked_ms = await _revoked_at_ms(request, kind, subject)
    if revoked_ms and issued_ms <= revoked_ms:
        raise Unauthorized("token revoked", challenge=challenge("invalid_token", "token revoked"))
    obo = claims.get("obo")
    return Principal(
        kind=kind,
        id=subject,
        roles=frozenset(r for r in claims.get("roles", ()) if r in ROLES),
        scopes=frozenset(str(claims.get("scope", "")).split()),
        on_behalf_of=str(obo) if obo else None,
    )


async def authenticate(request: web.Request) -> Principal | None:
    """The caller's principal, or None when no credential was presented (cached per request)."""
    cached: Principal | None = request.get(PRINCIPAL)  # aiohttp types Request.get without RequestKey
    if cached is not None:
        return cached
    token = bearer_token(request)
    if token is None:
        return None
    principal = await principal_from_token(request, token)
    request[PRINCIPAL] = principal
    return principal


async def require_principal(request: web.Request) -> Principal:
    principal = await authenticate(request)
    if principal is None:
        raise Unauthorized("a bearer token is required", challenge=challenge())
    return principal


async def require_user(request: web.Request) -> Principal:
    """A signed-in user account (not the admin key, not an API client)."""
    principal = await require_principal(request)
    if principal.kind != "user":
        raise Forbidden("requires a user account token")
    return principal
