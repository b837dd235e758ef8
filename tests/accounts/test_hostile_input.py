"""Hostile input to the accounts endpoints: always a clear 4xx, never a 500, nothing created."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.support.accounts import GOOD_PASSWORD

FORM = {"Content-Type": "application/x-www-form-urlencoded"}

TOKEN_BODIES = [
    b"\xff\xfe=\xff",
    b"grant_type=password&username=%ff%fe&password=x",
    b"grant_type=password&username=a%00b%40example.test&password=x",
    b"grant_type=client_credentials&client_id=%00&client_secret=%00",
    b"grant_type=client_credentials&client_id=" + b"c" * 65 + b"&client_secret=x",
    b"grant_type=refresh_token&refresh_token=%00",
    b"grant_type=%00",
    b"=",
    b"&&&",
]


@pytest.mark.parametrize("body", TOKEN_BODIES, ids=range(len(TOKEN_BODIES)))
async def test_token_endpoint_answers_hostile_forms_with_rfc_6749_errors(client: Any, body: bytes) -> None:
    resp = await client.post("/oauth/token", data=body, headers=FORM)
    assert resp.status in (400, 401), await resp.text()
    assert (await resp.json())["error"] in ("invalid_request", "invalid_grant", "invalid_client",
                                            "unsupported_grant_type")


async def test_token_endpoint_rejects_a_form_over_the_body_limit(client: Any) -> None:
    resp = await client.post("/oauth/token", data=b"grant_type=password&" + b"a=1&" * 40_000, headers=FORM)
    assert resp.status == 413


async def test_basic_credentials_that_are_not_utf8_are_an_invalid_client(client: Any) -> None:
    basic = base64.b64encode(b"\xff:\xfe").decode()
    resp = await client.post("/oauth/token", data=b"grant_type=client_credentials",
                             headers={**FORM, "Authorization": f"Basic {basic}"})
    assert resp.status == 401 and (await resp.json())["error"] == "invalid_client"


REGISTRATIONS = [
    {"email": "a\u0000b@example.test", "password": GOOD_PASSWORD, "name": "x"},
    {"email": "ok@example.test", "password": GOOD_PASSWORD, "name": "x\u0000y"},
    {"email": "ok@example.test", "password": GOOD_PASSWORD, "name": "   "},
    {"email": "ok@example.test", "password": GOOD_PASSWORD, "name": "x" * 201},
    {"email": "x" * 250 + "@example.test", "password": GOOD_PASSWORD, "name": "x"},
    {"email": ["ok@example.test"], "password": GOOD_PASSWORD, "name": "x"},
]


async def test_registration_refuses_hostile_fields(client: Any, db: Any) -> None:
    for body in REGISTRATIONS:
        resp = await client.post("/api/users", json=body)
        assert resp.status == 422, (body, await resp.text())
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_path_parameters_that_cannot_exist_are_404(client: Any, admin_headers: dict[str, str]) -> None:
    for path in ("/api/users/%00", "/api/users/not-a-uuid", "/api/clients/%00", "/api/clients/" + "c" * 100):
        resp = await client.get(path, headers=admin_headers)
        assert resp.status == 404, (path, await resp.text())
    resp = await client.delete("/api/clients/%00", headers=admin_headers)
    assert resp.status == 404


async def test_oversized_bearer_tokens_are_refused(client: Any) -> None:
    resp = await client.get("/api/users/me", headers={"Authorization": "Bearer " + "a" * 5000})
    assert resp.status == 401 and "WWW-Authenticate" in resp.headers
