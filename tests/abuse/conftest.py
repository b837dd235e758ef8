"""Fixtures for the abuse-defence tests: settings without a database, and a tiny app whose
routes call the mechanisms exactly as the service handlers do."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web

from stagedoor.metrics import BaseMetrics
from stagedoor.openapi import Api
from stagedoor.rate_limit import enforce
from stagedoor.settings import Settings, load_settings
from stagedoor.web import base_app, json_response


@pytest.fixture
def abuse_settings(redis_url: str, redis_prefix: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "redis_key_prefix": redis_prefix,
            "queue_token_secret": secrets.token_urlsafe(32),
            "admin_api_key": "abuse-admin-key-" + "y" * 16,
            "cookie_secure": False,
            "environment": "test",
        }
        values.update(overrides)
        return load_settings(environ={}, **values)

    return make


class Ok(msgspec.Struct):
    ok: bool


def limited_app(settings: Settings) -> web.Application:
    """POST /limited/{limit}?subject=...&ip=0 enforces that limit class and answers 200."""
    api = Api(tag="test")

    @api.post("/limited/{limit}", summary="rate-limited test route", response=Ok, errors=(429,))
    async def limited(request: web.Request) -> web.Response:
        await enforce(request, request.match_info["limit"], request.query.get("subject"),
                      per_ip=request.query.get("ip") != "0")
        return json_response(Ok(ok=True))

    return base_app(settings, BaseMetrics("abusetest"), [api], title="abuse test", uses_db=False)
