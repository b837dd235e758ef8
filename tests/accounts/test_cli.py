"""`stagedoor create-admin`, `register-client` and `revoke-client`, run as real processes."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from typing import Any

from stagedoor.settings import Settings
from tests.support.accounts import GOOD_PASSWORD, login, new_email, register, token_request


async def _stagedoor(settings: Settings, *args: str, stdin: str = "") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEDOOR_")}
    env.update({
        "STAGEDOOR_DATABASE_URL": settings.database_url or "",
        "STAGEDOOR_REDIS_URL": settings.redis_url or "",
        "STAGEDOOR_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "STAGEDOOR_ARGON2_MEMORY_KIB": "1024",
        "STAGEDOOR_ARGON2_TIME_COST": "1",
    })
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stagedoor.cli", *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_create_admin_then_sign_in_as_admin(client: Any, accounts_settings: Any, keyring: Any) -> None:
    settings = accounts_settings()
    email = new_email()
    code, out, err = await _stagedoor(settings, "create-admin", "--email", email, "--password-stdin",
                                      stdin=GOOD_PASSWORD + "\n")
    assert code == 0, err
    assert "created admin" in out and GOOD_PASSWORD not in out
    body = await (await login(client, email)).json()
    assert sorted(keyring.verify(body["access_token"], "stagedoor-api")["roles"]) == ["admin", "customer"]
    # running it again on an existing account promotes / resets instead of failing
    code, out, _ = await _stagedoor(settings, "create-admin", "--email", email, "--generate-password")
    assert code == 0 and "updated admin" in out
    new_password = re.search(r"password \(shown once\): (\S+)", out)
    assert new_password
    assert (await login(client, email, new_password.group(1))).status == 200


async def test_create_admin_refuses_a_weak_password(accounts_settings: Any) -> None:
    code, _, err = await _stagedoor(accounts_settings(), "create-admin", "--email", new_email(),
                                    "--password-stdin", stdin="password123\n")
    assert code == 2 and "too common" in err


async def test_register_and_revoke_a_client(client: Any, accounts_settings: Any) -> None:
    settings = accounts_settings()
    owner = new_email()
    await register(client, owner)
    code, out, err = await _stagedoor(settings, "register-client", "--name", "door scanners", "--owner", owner,
                                      "--scope", "checkin")
    assert code == 0, err
    client_id = re.search(r"client_id:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    secret = re.search(r"client_secret:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    resp = await token_request(client, form)
    assert resp.status == 200 and (await resp.json())["scope"] == "checkin"
    code, out, err = await _stagedoor(settings, "revoke-client", client_id)
    assert code == 0, err
    assert (await token_request(client, form)).status == 401
    code, _, err = await _stagedoor(settings, "register-client", "--name", "x", "--scope", "everything")
    assert code == 2 and "invalid choice" in err
    code, _, err = await _stagedoor(settings, "register-client", "--name", "x", "--owner", new_email(),
                                    "--scope", "checkin")
    assert code == 2 and "no account" in err
