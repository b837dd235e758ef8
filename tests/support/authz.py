"""Callers of the authorization tests: API clients registered for an owner with chosen scopes
(a real ``client_credentials`` token from the ticketing service), and the comparable shape of
a problem answer (status, content type, body without the per-request id)."""

from __future__ import annotations

from typing import Any

from ticketing.appkeys import TOKENS


async def client_headers(ticketing: Any, owner_id: str | None, scopes: list[str]) -> dict[str, str]:
    """Bearer headers of a new API client of ``owner_id`` (None: ownerless) holding ``scopes``."""
    registered, secret = await ticketing.app[TOKENS].clients.register(name="authz", owner_id=owner_id,
                                                                      scopes=scopes)
    resp = await ticketing.post("/oauth/token", data={"grant_type": "client_credentials",
                                                      "client_id": registered.client_id, "client_secret": secret})
    assert resp.status == 200, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


async def problem_shape(resp: Any, *, replace: tuple[str, str] | None = None) -> tuple[int, str, dict[str, Any]]:
    """(status, content type, body) of a problem answer, minus ``request_id``; ``replace`` swaps one
    string (a path parameter the answer echoes) for a placeholder in the detail and instance."""
    body: dict[str, Any] = await resp.json()
    body.pop("request_id", None)
    if replace is not None:
        for field in ("detail", "instance"):
            if isinstance(body.get(field), str):
                body[field] = body[field].replace(replace[0], replace[1])
    return resp.status, resp.content_type, body
