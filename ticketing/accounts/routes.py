"""HTTP routes of accounts and OAuth2: thin handlers over ``ticketing.accounts.accounts`` and
``ticketing.accounts.oauth``, plus the cleanup context that builds their stores.

``POST /oauth/token`` answers in RFC 6749 section 5.2 JSON (not problem+json), with
``Cache-Control: no-store``; everything else answers problem+json like the rest of the API.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import unquote

import msgspec
from aiohttp import web

from stagedoor import rate_limit
from stagedoor.auth import authenticate, require_principal
from stagedoor.client_ip import client_ip
from stagedoor.errors import BadRequest, RateLimited, StagedoorError
from stagedoor.openapi import Api
from stagedoor.policy import Action, authorize
from stagedoor.web import DB, KEYRING, KEYS, REDIS, SETTINGS, decode_body, decode_query, json_response
from ticketing.accounts.accounts import Accounts, UserPage
from ticketing.accounts.errors import ClientNotFound, NotAUserAccount
from ticketing.accounts.history import HistoryQuery, OrderPage, TicketPage, UserHistoryStore
from ticketing.accounts.oauth import (
    CLIENT_SCOPES,
    GRANT_TYPES,
    ClientScope,
    OAuthError,
    TokenIssuer,
    TokenResponse,
    parse_scope,
)
from ticketing.accounts.oauth_store import Client, ClientStore, RefreshTokenStore
from ticketing.accounts.passwords import Passwords
from ticketing.accounts.store import User, UserStore
from ticketing.accounts.throttle import LoginThrottle
from ticketing.appkeys import ACCOUNTS, ACCOUNTS_METRICS, HISTORY, METRICS, TOKENS
from ticketing.metrics import AccountsMetrics

MAX_FORM_FIELD_CHARS = 1024
OAUTH_FIELDS = ("grant_type", "username", "password", "refresh_token", "scope", "client_id", "client_secret")

api = Api(tag="accounts")

# Printable text with at least one non-blank character (no control characters: PostgreSQL
# refuses NUL, and names end up in emails and pages).
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200,
                                   pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$")]
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class RegisterRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    name: Name


class UserPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    roles: Annotated[list[Annotated[str, msgspec.Meta(max_length=32)]], msgspec.Meta(max_length=3)] | None = None
    blocked: bool | None = None
    name: Name | None = None


class UserSearch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    q: Annotated[str, msgspec.Meta(min_length=1, max_length=254, pattern=r"^[^\x00-\x1f\x7f]+$")] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 50
    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class ClientRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    scopes: Annotated[list[ClientScope], msgspec.Meta(min_length=1, max_length=len(CLIENT_SCOPES))]
    owner_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F-]{36}$")] | None = None


class ClientRegistered(msgspec.Struct, kw_only=True):
    client_id: str
    client_secret: str
    name: str
    owner_id: str | None
    scopes: list[str]


FormField = Annotated[str, msgspec.Meta(max_length=MAX_FORM_FIELD_CHARS)]


class TokenRequest(msgspec.Struct, kw_only=True):
    """application/x-www-form-urlencoded fields of POST /oauth/token (RFC 6749)."""

    grant_type: FormField
    username: FormField | None = None
    password: FormField | None = None
    refresh_token: FormField | None = None
    scope: FormField | None = None
    client_id: FormField | None = None
    client_secret: FormField | None = None


class OAuthErrorBody(msgspec.Struct, kw_only=True):
    error: str
    error_description: str


# ---------------------------------------------------------------- context

async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Builds the accounts stores and services (after the Redis, PostgreSQL and key contexts)."""
    settings = app[SETTINGS]
    pool = app[DB]
    accounts = Accounts(users=UserStore(pool), refresh_tokens=RefreshTokenStore(pool),
                        passwords=Passwords.from_settings(settings), redis=app[REDIS], keys=app[KEYS],
                        settings=settings)
    throttle = LoginThrottle(app[REDIS], app[KEYS], per_account=settings.login_failures_per_account,
                             per_ip=settings.login_failures_per_ip, window_s=settings.login_failure_window_s,
                             timeout_s=settings.dependency_timeout_s)
    await accounts.passwords.prepare()
    app[ACCOUNTS] = accounts
    app[ACCOUNTS_METRICS] = AccountsMetrics(app[METRICS].registry)
    app[HISTORY] = UserHistoryStore(pool)
    app[TOKENS] = TokenIssuer(accounts=accounts, clients=ClientStore(pool), throttle=throttle,
                              keyring=app[KEYRING], access_ttl_s=settings.access_token_ttl_s,
                              refresh_ttl_s=settings.refresh_token_ttl_s)
    yield


# ---------------------------------------------------------------- users

@api.post("/api/users", body=RegisterRequest, response=User, status=201, errors=(409, 415, 422, 429),
          summary="Register a customer account")
async def register(request: web.Request) -> web.Response:
    counter = request.app[ACCOUNTS_METRICS].registrations_total
    try:
        body = await decode_body(request, RegisterRequest)
        await rate_limit.enforce(request, "register", body.email.strip().lower())
        user = await request.app[ACCOUNTS].register(email=body.email, password=body.password, name=body.name)
    except StagedoorError as exc:
        counter.labels(exc.code).inc()
        raise
    counter.labels("ok").inc()
    return json_response(user, status=201, headers={"Location": f"/api/users/{user.id}"})


@api.get("/api/users/me", response=User, errors=(401, 403), auth="bearer", summary="My profile")
async def me(request: web.Request) -> web.Response:
    principal = authorize(await authenticate(request), Action.PROFILE_READ)
    return json_response(await request.app[ACCOUNTS].profile(principal))


@api.get("/api/users/me/orders", query=HistoryQuery, response=OrderPage, errors=(401, 403, 422), auth="bearer",
         summary="My orders, newest first (cursor pagination)")
async def my_orders(request: web.Request) -> web.Response:
    principal = authorize(await authenticate(request), Action.PROFILE_READ)
    if principal.kind != "user":
        raise NotAUserAccount("this endpoint needs a user's access token")
    query = decode_query(request, HistoryQuery)
    return json_response(await request.app[HISTORY].orders(principal.id, query))


@api.get("/api/users/me/tickets", query=HistoryQuery, response=TicketPage, errors=(401, 403, 422), auth="bearer",
         summary="My tickets (of confirmed orders), newest first (cursor pagination)")
async def my_tickets(request: web.Request) -> web.Response:
    principal = authorize(await authenticate(request), Action.PROFILE_READ)
    if principal.kind != "user":
        raise NotAUserAccount("this endpoint needs a user's access token")
    query = decode_query(request, HistoryQuery)
    return json_response(await request.app[HISTORY].tickets(principal.id, query))


@api.get("/api/users", query=UserSearch, response=UserPage, errors=(401, 403, 422), auth="bearer",
         summary="Users, newest first; q = email prefix (admin)")
async def list_users(request: web.Request) -> web.Response:
    authorize(await require_principal(request), Action.USER_READ)
    query = decode_query(request, UserSearch)
    page = await request.app[ACCOUNTS].list_users(limit=query.limit, email_prefix=query.q, cursor=query.cursor)
    return json_response(page)


@api.get("/api/users/{user_id}", response=User, errors=(401, 403, 404), auth="bearer",
         summary="A user's account (admin)")
async def get_user(request: web.Request) -> web.Response:
    authorize(await require_principal(request), Action.USER_READ)
    return json_response(await request.app[ACCOUNTS].get(request.match_info["user_id"]))


@api.patch("/api/users/{user_id}", body=UserPatch, response=User, errors=(401, 403, 404, 422), auth="bearer",
           summary="Set roles, block or unblock a user (admin)")
async def patch_user(request: web.Request) -> web.Response:
    authorize(await require_principal(request), Action.USER_MANAGE)
    body = await decode_body(request, UserPatch)
    user = await request.app[ACCOUNTS].update(request.match_info["user_id"], roles=body.roles,
                                              blocked=body.blocked, name=body.name)
    return json_response(user)


# ---------------------------------------------------------------- API clients (admin)

@api.post("/api/clients", body=ClientRequest, response=ClientRegistered, status=201, errors=(401, 403, 404, 422),
          auth="bearer", summary="Register an API client (admin); the secret is shown once")
async def create_client(request: web.Request) -> web.Response:
    authorize(await require_principal(request), Action.CLIENT_MANAGE)
    body = await decode_body(request, ClientRequest)
    if body.owner_id is not None:
        await request.app[ACCOUNTS].get(body.owner_id)  # UserNotFound -> 404
    client, secret = await request.app[TOKENS].clients.register(name=body.name, owner_id=body.owner_id,
                                                                scopes=list(body.scopes))
    out = ClientRegistered(client_id=client.client_id, client_secret=secret, name=client.name,
                           owner_id=client.owner_id, scopes=client.scopes)
    return json_response(out, status=201, headers={"Cache-Control": "no-store"})


@api.get("/api/clients/{client_id}", response=Client, errors=(401, 403, 404), auth="bearer",
         summary="An API client (admin)")
async def get_client(request: web.Request) -> web.Response:
    authorize(await require_principal(request), Action.CLIENT_MANAGE)
    client_id = request.match_info["client_id"]
    client = await request.app[TOKENS].clients.get(client_id) if CLIENT_ID_RE.match(client_id) else None
    if client is None:
        raise ClientNotFound("no such API client")
    return json_response(client)


@api.delete("/api/clients/{client_id}", status=204, errors=(401, 403, 404), auth="bearer",
            summary="Revoke an API client and its live tokens (admin)")
async def revoke_client(request: web.Request) -> web.Response:
    authorize(await require_principal(request), Action.CLIENT_MANAGE)
    client_id = request.match_info["client_id"]
    if not CLIENT_ID_RE.match(client_id) or not await request.app[TOKENS].revoke_client(client_id):
        raise ClientNotFound("no such API client")
    return web.Response(status=204)


# ---------------------------------------------------------------- OAuth2 token endpoint

def _oauth_error(exc: OAuthError) -> web.Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="stagedoor", error="invalid_client"'
    return json_response(OAuthErrorBody(error=exc.error, error_description=exc.description),
                         status=exc.status, headers=headers)


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "malformed Basic credentials", 401, basic_challenge=True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401, basic_challenge=True)
    return unquote(client_id), unquote(secret)  # RFC 6749 2.3.1: form-urlencoded, then Basic


async def _token_form(request: web.Request) -> TokenRequest:
    if request.content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    try:
        form = await request.post()
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the form body is not valid UTF-8 form encoding") from None
    values: dict[str, str] = {}
    for key in set(form.keys()):
        items = form.getall(key)
        if len(items) > 1:
            raise OAuthError("invalid_request", f"parameter {key} given more than once")
        value = items[0]
        if not isinstance(value, str) or len(value) > MAX_FORM_FIELD_CHARS:
            raise OAuthError("invalid_request", f"parameter {key} is too long or not text")
        if key in OAUTH_FIELDS:
            if key not in ("password", "client_secret") and _CONTROL_CHARS.search(value):
                raise OAuthError("invalid_request", f"parameter {key} contains control characters")
            values[key] = value
    if not values.get("grant_type"):
        raise OAuthError("invalid_request", "grant_type is required")
    return msgspec.convert(values, TokenRequest)


@api.post("/oauth/token", body=TokenRequest, body_content_type="application/x-www-form-urlencoded",
          response=TokenResponse, errors=(429,),
          extra_responses={400: "RFC 6749 error (invalid_request, invalid_grant, unsupported_grant_type, "
                                "invalid_scope)", 401: "invalid_client (WWW-Authenticate: Basic)"},
          summary="OAuth2 token endpoint: password, refresh_token, client_credentials")
async def token(request: web.Request) -> web.Response:
    issuer = request.app[TOKENS]
    counter = request.app[ACCOUNTS_METRICS].token_grants_total
    grant = "unknown"
    try:
        form = await _token_form(request)
        grant = form.grant_type if form.grant_type in GRANT_TYPES else "unsupported"
        if form.grant_type == "password":
            ip = client_ip(request, request.app[SETTINGS].trusted_proxies)
            await rate_limit.enforce(request, "login", (form.username or "").strip().lower() or None)
            result = await issuer.password_grant(username=(form.username or "").strip(),
                                                 password=form.password or "", ip=ip)
        elif form.grant_type == "refresh_token":
            result = await issuer.refresh_grant(refresh_token=form.refresh_token or "")
        elif form.grant_type == "client_credentials":
            basic = _basic_credentials(request)
            if basic and (form.client_id or form.client_secret):
                raise OAuthError("invalid_request", "use one client authentication method, not two")
            client_id, secret = basic or (form.client_id or "", form.client_secret or "")
            result = await issuer.client_credentials_grant(client_id=client_id, client_secret=secret,
                                                           scope=parse_scope(form.scope),
                                                           used_basic=basic is not None)
        elif form.grant_type in GRANT_TYPES:  # pragma: no cover - every listed grant is handled above
            raise OAuthError("unsupported_grant_type", f"grant_type {form.grant_type} is not supported")
        else:
            raise OAuthError("unsupported_grant_type", "grant_type must be one of " + ", ".join(GRANT_TYPES))
    except OAuthError as exc:
        counter.labels(grant, exc.error).inc()
        return _oauth_error(exc)
    except RateLimited as exc:  # failed-login throttle or the login request rate limit
        counter.labels(grant, "slow_down").inc()
        return json_response(OAuthErrorBody(error="slow_down", error_description=exc.detail), status=429,
                             headers={"Retry-After": str(exc.retry_after_s), "Cache-Control": "no-store"})
    except BadRequest as exc:  # a body aiohttp could not parse
        counter.labels(grant, "invalid_request").inc()
        return _oauth_error(OAuthError("invalid_request", exc.detail))
    counter.labels(grant, "ok").inc()
    return json_response(result, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
