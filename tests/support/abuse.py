"""Abuse-defence helpers: a tiny app whose route enforces a rate limit exactly as the service
handlers do, a proof-of-work nonce that does not solve a challenge, and the checks every HTML
page's security headers must pass."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from stagedoor import pow as pow_
from stagedoor.metrics import BaseMetrics
from stagedoor.openapi import Api
from stagedoor.rate_limit import enforce
from stagedoor.settings import Settings
from stagedoor.web import base_app, json_response

POW_DIFFICULTY = 8  # 256 hashes expected: fast in tests, the same code path as any difficulty
HTML_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "X-Content-Type-Options",
                "Permissions-Policy")


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


def wrong_nonce(challenge: str, difficulty: int = POW_DIFFICULTY) -> str:
    """A nonce whose work digest falls short of ``difficulty`` leading zero bits."""
    return next(str(n) for n in range(10_000)
                if pow_.leading_zero_bits(pow_.work_digest(challenge, str(n))) < difficulty)


def assert_html_hardened(headers: Any, where: str) -> None:
    for name in HTML_HEADERS:
        assert name in headers, f"{where}: {name} missing"
    csp = dict(d.strip().split(" ", 1) for d in headers["Content-Security-Policy"].split(";"))
    assert csp["frame-ancestors"] == "'none'", where
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"], where
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'", where
    assert headers["X-Content-Type-Options"] == "nosniff", where
    assert headers["X-Frame-Options"] == "DENY", where
    assert headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin-when-cross-origin"), where
