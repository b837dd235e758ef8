"""OAuth2 token endpoint over HTTP: the three grants, RFC 6749 error bodies, refresh rotation
with reuse detection, API clients, and tokens accepted by every service."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import jwt

from stagedoor.keys import KeyRing
from tests.support.accounts import GOOD_PASSWORD, login, new_email, register, token_request
from ticketing.appkeys import TOKENS


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _oauth_error(resp: Any, status: int, error: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["error"] == error and body["error_description"]
    return body


async def test_password_grant_issues_an_eddsa_access_token_and_a_refresh_token(client: Any, keyring: KeyRing) -> None:
    email = new_email()
    user = await register(client, email)
    resp = await login(client, email)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["refresh_token"].startswith("rt_")
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "EdDSA" and header["kid"] == keyring.signing_kid
    claims = keyring.verify(body["access_token"], "stagedoor-api")
    assert claims["sub"] == user["id"] and claims["roles"] == ["customer"] and claims["kind"] == "user"


async def test_unknown_email_and_wrong_password_get_the_same_answer(client: Any) -> None:
    email = new_email()
    await register(client, email)
    wrong = await _oauth_error(await login(client, email, "not-the-password-9"), 400, "invalid_grant")
    unknown = await _oauth_error(await login(client, new_email()), 400, "invalid_grant")
    assert wrong == unknown


async def test_email_login_is_case_insensitive(client: Any) -> None:
    email = new_email()
    await register(client, email)
    assert (await login(client, email.upper())).status == 200


async def test_request_errors_follow_rfc_6749(client: Any) -> None:
    await _oauth_error(await token_request(client, {"grant_type": "implicit"}), 400, "unsupported_grant_type")
    await _oauth_error(await token_request(client, {"username": "x"}), 400, "invalid_request")
    await _oauth_error(await token_request(client, {"grant_type": "password"}), 400, "invalid_request")
    resp = await client.post("/oauth/token", json={"grant_type": "password"})
    await _oauth_error(resp, 400, "invalid_request")
    resp = await client.post("/oauth/token", data="grant_type=password&grant_type=password",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    await _oauth_error(resp, 400, "invalid_request")
    resp = await token_request(client, {"grant_type": "password", "username": "a@b.test", "password": "p" * 5000})
    await _oauth_error(resp, 400, "invalid_request")


async def test_refresh_rotates_and_the_new_pair_works(client: Any) -> None:
    email = new_email()
    await register(client, email)
    first = await (await login(client, email)).json()
    resp = await token_request(client, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert resp.status == 200
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/users/me", headers=_bearer(second["access_token"]))).status == 200
    resp = await token_request(client, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]})
    assert resp.status == 200


async def test_reusing_a_refresh_token_revokes_the_whole_family(client: Any, db: Any) -> None:
    email = new_email()
    await register(client, email)
    first = await (await login(client, email)).json()
    rotated = await (await token_request(client, {"grant_type": "refresh_token",
                                                  "refresh_token": first["refresh_token"]})).json()
    # an attacker replays the first (already used) refresh token
    resp = await token_request(client, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    await _oauth_error(resp, 400, "invalid_grant")
    # ... so the legitimate successor is dead too, and so are the access tokens issued so far
    resp = await token_request(client, {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]})
    await _oauth_error(resp, 400, "invalid_grant")
    assert (await client.get("/api/users/me", headers=_bearer(rotated["access_token"]))).status == 401
    live = await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND used_at IS NULL")
    assert live == 0
    # a fresh sign-in still works
    assert (await login(client, email)).status == 200


async def test_concurrent_use_of_one_refresh_token_rotates_once(client: Any) -> None:
    email = new_email()
    await register(client, email)
    first = await (await login(client, email)).json()
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    responses = await asyncio.gather(*(token_request(client, form) for _ in range(5)))
    assert sorted(r.status for r in responses) == [200, 400, 400, 400, 400]


async def test_refresh_tokens_are_stored_hashed_and_unknown_ones_refused(client: Any, db: Any) -> None:
    email = new_email()
    await register(client, email)
    body = await (await login(client, email)).json()
    stored = await db.fetch("SELECT token_hash FROM refresh_tokens")
    assert all(body["refresh_token"].encode() not in bytes(r["token_hash"]) for r in stored)
    resp = await token_request(client, {"grant_type": "refresh_token", "refresh_token": "rt_forged"})
    await _oauth_error(resp, 400, "invalid_grant")


async def test_expired_refresh_token_is_refused(client: Any) -> None:
    email = new_email()
    await register(client, email)
    issuer = client.app[TOKENS]
    real_clock = issuer._clock
    body = await (await login(client, email)).json()
    issuer._clock = lambda: real_clock() + issuer.refresh_ttl_s + 1  # move time instead of sleeping
    try:
        resp = await token_request(client, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    finally:
        issuer._clock = real_clock
    await _oauth_error(resp, 400, "invalid_grant")


async def _register_client(client: Any, scopes: list[str], owner_id: str | None = None) -> tuple[str, str]:
    registered, secret = await client.app[TOKENS].clients.register(name="automation", owner_id=owner_id,
                                                                   scopes=scopes)
    return registered.client_id, secret


async def test_client_credentials_with_basic_auth_and_form_fields(client: Any, keyring: KeyRing) -> None:
    client_id, secret = await _register_client(client, ["checkin", "sales:read"])
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    resp = await token_request(client, {"grant_type": "client_credentials"}, {"Authorization": f"Basic {basic}"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["scope"] == "checkin sales:read" and "refresh_token" not in body
    claims = keyring.verify(body["access_token"], "stagedoor-api")
    assert claims["kind"] == "client" and claims["sub"] == client_id
    resp = await token_request(client, {"grant_type": "client_credentials", "client_id": client_id,
                                        "client_secret": secret, "scope": "checkin"})
    assert resp.status == 200 and (await resp.json())["scope"] == "checkin"


async def test_client_errors(client: Any) -> None:
    client_id, secret = await _register_client(client, ["checkin"])
    resp = await token_request(client, {"grant_type": "client_credentials", "client_id": client_id,
                                        "client_secret": "cs_wrong"})
    await _oauth_error(resp, 401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    resp = await token_request(client, {"grant_type": "client_credentials"},
                               {"Authorization": "Basic !!notbase64"})
    await _oauth_error(resp, 401, "invalid_client")
    resp = await token_request(client, {"grant_type": "client_credentials", "client_id": client_id,
                                        "client_secret": secret, "scope": "admin"})
    await _oauth_error(resp, 400, "invalid_scope")
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    resp = await token_request(client, {"grant_type": "client_credentials", "client_id": client_id,
                                        "client_secret": secret}, {"Authorization": f"Basic {basic}"})
    await _oauth_error(resp, 400, "invalid_request")


async def test_revoking_a_client_stops_its_tokens_and_new_grants(client: Any, db: Any) -> None:
    client_id, secret = await _register_client(client, ["admin"])
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    token = (await (await token_request(client, form)).json())["access_token"]
    user = await register(client)
    assert (await client.get(f"/api/users/{user['id']}", headers=_bearer(token))).status == 200
    assert await client.app[TOKENS].revoke_client(client_id)
    assert (await client.get(f"/api/users/{user['id']}", headers=_bearer(token))).status == 401
    await _oauth_error(await token_request(client, form), 401, "invalid_client")
    assert await db.fetchval("SELECT secret_hash <> $1::bytea FROM api_clients", secret.encode())


async def test_login_answers_do_not_take_a_password_when_throttled(client: Any) -> None:
    """A throttled account gets 429 before its password is checked, even for the right password."""
    settings_limit = client.app[TOKENS].throttle.per_account
    email = new_email()
    await register(client, email)
    for _ in range(settings_limit):
        await _oauth_error(await login(client, email, "wrong-password-xx"), 400, "invalid_grant")
    resp = await login(client, email, GOOD_PASSWORD)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"] == "slow_down"


async def test_openapi_documents_the_accounts_endpoints(client: Any) -> None:
    spec = await (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ("/api/users", "/api/users/me", "/api/users/me/orders", "/api/users/me/tickets",
                 "/api/users/{user_id}", "/oauth/token", "/api/clients", "/api/clients/{client_id}"):
        assert path in paths, path
    assert "application/x-www-form-urlencoded" in paths["/oauth/token"]["post"]["requestBody"]["content"]
