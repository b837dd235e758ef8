"""Registration, profile and the admin's user changes, over HTTP on real PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

from tests.support.accounts import GOOD_PASSWORD, login, new_email, register


async def test_registration_returns_the_account_without_secrets(client: Any) -> None:
    email = new_email()
    resp = await client.post("/api/users", json={"email": email, "password": GOOD_PASSWORD, "name": "Ada"})
    assert resp.status == 201
    body = await resp.json()
    assert body["email"] == email and body["name"] == "Ada"
    assert body["roles"] == ["customer"] and body["blocked"] is False
    assert "password" not in str(body) and "hash" not in str(body)
    assert resp.headers["Location"] == f"/api/users/{body['id']}"


async def test_registered_password_is_stored_as_argon2id(client: Any, db: Any) -> None:
    user = await register(client)
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1::uuid", user["id"])
    assert stored.startswith("$argon2id$") and GOOD_PASSWORD not in stored


async def test_email_is_unique_case_insensitively(client: Any) -> None:
    email = new_email()
    await register(client, email)
    resp = await client.post("/api/users", json={"email": email.upper(), "password": GOOD_PASSWORD, "name": "X"})
    assert resp.status == 409
    assert (await resp.json())["type"] == "/problems/email-taken"


async def test_weak_passwords_are_refused_with_every_reason(client: Any) -> None:
    cases = {
        "short1!": "at least 10 characters",
        "Password2024!": "too common",
        "qwertyuiop": "too common",
        "aaaaaaaaaaaaaa": "different characters",
    }
    for password, reason in cases.items():
        resp = await client.post("/api/users", json={"email": new_email(), "password": password, "name": "X"})
        assert resp.status == 422, password
        body = await resp.json()
        assert body["type"] == "/problems/weak-password"
        assert any(reason in e["message"] for e in body["errors"]), (password, body)


async def test_password_containing_the_email_is_refused(client: Any) -> None:
    resp = await client.post("/api/users", json={"email": "margaret@example.test",
                                                 "password": "margaret-rules-77", "name": "M"})
    assert resp.status == 422
    assert "email" in (await resp.json())["detail"]


async def test_bad_input_is_a_clear_422_and_creates_nothing(client: Any, db: Any) -> None:
    bodies = [
        {"email": "not-an-email", "password": GOOD_PASSWORD, "name": "X"},
        {"email": "a@b", "password": GOOD_PASSWORD, "name": "X"},
        {"email": new_email(), "password": GOOD_PASSWORD, "name": ""},
        {"email": new_email(), "password": GOOD_PASSWORD},
        {"email": new_email(), "password": GOOD_PASSWORD, "name": "X", "roles": ["admin"]},
        {"email": new_email(), "password": "x" * 2000, "name": "X"},
        {"email": new_email(), "password": 12345678901, "name": "X"},
    ]
    for body in bodies:
        resp = await client.post("/api/users", json=body)
        assert resp.status == 422, (body, await resp.text())
        assert resp.content_type == "application/problem+json"
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_malformed_json_and_wrong_content_type(client: Any) -> None:
    resp = await client.post("/api/users", data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    resp = await client.post("/api/users", data=b"email=x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415


async def test_me_returns_the_profile_of_the_token_holder(client: Any) -> None:
    email = new_email()
    user = await register(client, email)
    token = (await (await login(client, email)).json())["access_token"]
    resp = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == user["id"] and body["last_login_at"] is not None


async def test_me_without_or_with_a_bad_token_is_401_with_a_challenge(client: Any) -> None:
    resp = await client.get("/api/users/me")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await client.get("/api/users/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_admin_sets_roles_and_the_old_token_stops_working(client: Any, admin_headers: dict[str, str]) -> None:
    email = new_email()
    user = await register(client, email)
    old = (await (await login(client, email)).json())["access_token"]
    resp = await client.patch(f"/api/users/{user['id']}", json={"roles": ["organizer", "customer"]},
                              headers=admin_headers)
    assert resp.status == 200
    assert (await resp.json())["roles"] == ["customer", "organizer"]
    # the old token carries the old roles: it is revoked at once
    resp = await client.get("/api/users/me", headers={"Authorization": f"Bearer {old}"})
    assert resp.status == 401
    new = await (await login(client, email)).json()
    resp = await client.get("/api/users/me", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert resp.status == 200 and (await resp.json())["roles"] == ["customer", "organizer"]


async def test_patch_rejects_unknown_roles_and_unknown_users(client: Any, admin_headers: dict[str, str]) -> None:
    user = await register(client)
    resp = await client.patch(f"/api/users/{user['id']}", json={"roles": ["superuser"]}, headers=admin_headers)
    assert resp.status == 422
    resp = await client.patch(f"/api/users/{user['id']}", json={"roles": []}, headers=admin_headers)
    assert resp.status == 422
    resp = await client.patch(f"/api/users/{user['id']}", json={"colour": "red"}, headers=admin_headers)
    assert resp.status == 422
    for missing in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        resp = await client.patch(f"/api/users/{missing}", json={"blocked": True}, headers=admin_headers)
        assert resp.status == 404


async def test_blocking_stops_access_and_refresh_tokens_and_logins(client: Any, admin_headers: dict[str, str]) -> None:
    email = new_email()
    user = await register(client, email)
    tokens = await (await login(client, email)).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/api/users/me", headers=bearer)).status == 200
    resp = await client.patch(f"/api/users/{user['id']}", json={"blocked": True}, headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["blocked"] is True
    assert (await client.get("/api/users/me", headers=bearer)).status == 401
    resp = await client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                   "refresh_token": tokens["refresh_token"]})
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_grant"
    resp = await login(client, email)
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_grant"
    # unblocking lets them sign in again
    resp = await client.patch(f"/api/users/{user['id']}", json={"blocked": False}, headers=admin_headers)
    assert resp.status == 200
    assert (await login(client, email)).status == 200


async def test_blocking_is_seen_by_another_process_within_the_cache_window(
        service_client: Any, accounts_settings: Any, admin_headers: dict[str, str]) -> None:
    """Two app instances (as two processes would be): the second learns of the block from Redis."""
    settings = accounts_settings(revocation_cache_s=0)
    first = await service_client("ticketing", settings)
    second = await service_client("ticketing", settings)
    email = new_email()
    user = await register(first, email)
    token = (await (await login(first, email)).json())["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await second.get("/api/users/me", headers=bearer)).status == 200
    await first.patch(f"/api/users/{user['id']}", json={"blocked": True}, headers=admin_headers)
    assert (await second.get("/api/users/me", headers=bearer)).status == 401


async def test_admin_reads_any_user(client: Any, admin_headers: dict[str, str]) -> None:
    user = await register(client)
    resp = await client.get(f"/api/users/{user['id']}", headers=admin_headers)
    assert resp.status == 200 and (await resp.json())["id"] == user["id"]


async def test_admin_lists_users_by_email_prefix_with_pagination(client: Any, admin_headers: dict[str, str]) -> None:
    stem = f"list-{new_email()[4:12]}"
    made = [await register(client, f"{stem}-{i}@example.test") for i in range(3)]
    await register(client, f"other-{stem}@example.test")
    resp = await client.get("/api/users", params={"q": stem.upper(), "limit": 2}, headers=admin_headers)
    assert resp.status == 200
    page = await resp.json()
    assert [u["id"] for u in page["items"]] == [made[2]["id"], made[1]["id"]]
    resp = await client.get("/api/users", params={"q": stem, "limit": 2, "cursor": page["next_cursor"]},
                            headers=admin_headers)
    rest = await resp.json()
    assert [u["id"] for u in rest["items"]] == [made[0]["id"]] and rest["next_cursor"] is None
    # LIKE wildcards in q are literal
    resp = await client.get("/api/users", params={"q": "%"}, headers=admin_headers)
    assert (await resp.json())["items"] == []
    for bad in ({"limit": "0"}, {"cursor": "zzz"}, {"q": "a\u0000"}, {"sort": "email"}):
        assert (await client.get("/api/users", params=bad, headers=admin_headers)).status == 422, bad
