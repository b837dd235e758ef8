"""Failed-login throttling per account and per IP (Redis), with 429 + Retry-After."""

from __future__ import annotations

from typing import Any

from tests.support.accounts import GOOD_PASSWORD, login, new_email, register


async def _throttled_client(service_client: Any, accounts_settings: Any, **limits: int) -> Any:
    settings = accounts_settings(login_failure_window_s=600, **limits)
    return await service_client("ticketing", settings)


async def test_account_is_throttled_after_its_failure_limit_whatever_the_ip(
        service_client: Any, accounts_settings: Any) -> None:
    client = await _throttled_client(service_client, accounts_settings, login_failures_per_account=3,
                                     login_failures_per_ip=1000)
    email = new_email()
    await register(client, email)
    for i in range(3):
        assert (await login(client, email, "wrong-password-1", ip=f"203.0.113.{i}")).status == 400
    resp = await login(client, email, GOOD_PASSWORD, ip="198.51.100.7")
    assert resp.status == 429
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 600
    # other accounts are unaffected
    other = new_email()
    await register(client, other)
    assert (await login(client, other, ip="203.0.113.1")).status == 200


async def test_unknown_email_is_throttled_exactly_like_a_real_account(
        service_client: Any, accounts_settings: Any) -> None:
    client = await _throttled_client(service_client, accounts_settings, login_failures_per_account=2,
                                     login_failures_per_ip=1000)
    real, ghost = new_email(), new_email()
    await register(client, real)
    answers = []
    for email in (real, ghost):
        statuses = [(await login(client, email, "wrong-password-1")).status for _ in range(3)]
        last = await login(client, email, "wrong-password-1")
        answers.append((statuses, last.status, await last.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == [400, 400, 429]


async def test_ip_is_throttled_across_accounts(service_client: Any, accounts_settings: Any) -> None:
    client = await _throttled_client(service_client, accounts_settings, login_failures_per_account=100,
                                     login_failures_per_ip=4)
    target = new_email()
    await register(client, target)
    for _ in range(4):  # password spraying: one guess per account from one IP
        assert (await login(client, new_email(), "Spring-2026-guess", ip="192.0.2.50")).status == 400
    resp = await login(client, target, GOOD_PASSWORD, ip="192.0.2.50")
    assert resp.status == 429 and "Retry-After" in resp.headers
    # the same account from another IP is fine
    assert (await login(client, target, GOOD_PASSWORD, ip="192.0.2.51")).status == 200


async def test_success_clears_the_account_counter(service_client: Any, accounts_settings: Any) -> None:
    client = await _throttled_client(service_client, accounts_settings, login_failures_per_account=3,
                                     login_failures_per_ip=1000)
    email = new_email()
    await register(client, email)
    for _ in range(2):
        assert (await login(client, email, "wrong-password-1")).status == 400
    assert (await login(client, email)).status == 200
    for _ in range(2):
        assert (await login(client, email, "wrong-password-1")).status == 400
    assert (await login(client, email)).status == 200


async def test_throttle_keys_expire_and_hold_no_email(service_client: Any, accounts_settings: Any,
                                                      redis_client: Any, redis_prefix: str) -> None:
    client = await _throttled_client(service_client, accounts_settings, login_failures_per_account=5)
    email = new_email()
    assert (await login(client, email, "wrong-password-1")).status == 400
    keys = [k.decode() async for k in redis_client.scan_iter(match=f"{redis_prefix}:loginfail:*")]
    assert len(keys) == 2
    for key in keys:
        assert email not in key and email.split("@")[0] not in key
        assert 0 < await redis_client.pttl(key) <= 600_000


async def test_request_rate_limits_apply_to_register_and_login(service_client: Any, accounts_settings: Any) -> None:
    """The per-request limits (stagedoor/rate_limit.py) sit in front of both endpoints."""
    client = await service_client("ticketing", accounts_settings(
        rate_limits_enabled=True, rate_limit_register_per_ip="2/10m", rate_limit_login_per_ip="2/10m"))
    statuses = []
    for _ in range(3):
        resp = await client.post("/api/users", json={"email": new_email(), "password": GOOD_PASSWORD, "name": "R"},
                                 headers={"X-Forwarded-For": "198.51.100.20"})
        statuses.append(resp.status)
    assert statuses == [201, 201, 429]
    assert "Retry-After" in resp.headers
    statuses = []
    for _ in range(3):
        resp = await login(client, new_email(), "wrong-password-1", ip="198.51.100.21")
        statuses.append(resp.status)
    assert statuses == [400, 400, 429]
    assert "Retry-After" in resp.headers and (await resp.json())["error"] == "slow_down"
