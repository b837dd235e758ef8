"""Accounts subcommands of the ``stagedoor`` CLI (loaded by stagedoor/cli.py).

    stagedoor create-admin --email E [--name N] [--password-stdin | --generate-password]
    stagedoor register-client --name N [--owner EMAIL] --scope S [--scope S ...]
    stagedoor revoke-client CLIENT_ID

Passwords are never taken as arguments (they would show in ``ps`` and shell history):
from stdin, an interactive prompt, or generated and printed once. Client secrets are
printed once and stored hashed.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from stagedoor.auth import revoke_subject
from stagedoor.connections import make_pool, make_redis
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings, SettingsError, require
from ticketing.accounts.accounts import check_roles, normalize_email
from ticketing.accounts.errors import InvalidEmail, InvalidRoles
from ticketing.accounts.oauth import CLIENT_SCOPES
from ticketing.accounts.oauth_store import ClientStore
from ticketing.accounts.passwords import Passwords, password_problems
from ticketing.accounts.store import UserStore


def add_commands(subparsers: Any) -> None:
    if "create-admin" in subparsers.choices:  # stagedoor.cli.main() may load extensions more than once
        return
    admin = subparsers.add_parser("create-admin", help="create the first admin (or make an existing account admin)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="Administrator")
    source = admin.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    source.add_argument("--generate-password", action="store_true", help="generate one and print it once")
    admin.set_defaults(func=cmd_create_admin)

    client = subparsers.add_parser("register-client", help="register an API client (client_credentials grant)")
    client.add_argument("--name", required=True, help="what the client is for, e.g. 'door scanners'")
    client.add_argument("--owner", help="email of the user the client acts for (an organizer); "
                                        "omit for SRE automation (then only scope 'admin' grants anything)")
    client.add_argument("--scope", action="append", required=True, choices=CLIENT_SCOPES,
                        help="repeat for several scopes")
    client.set_defaults(func=cmd_register_client)

    revoke = subparsers.add_parser("revoke-client", help="revoke an API client and its live tokens")
    revoke.add_argument("client_id")
    revoke.set_defaults(func=cmd_revoke_client)


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    if args.generate_password:
        return secrets.token_urlsafe(18), True
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if not sys.stdin.isatty():
        raise SettingsError("no password: use --password-stdin, --generate-password or a terminal")
    first = getpass.getpass("password for the admin: ")
    if getpass.getpass("again: ") != first:
        raise SettingsError("the passwords differ")
    return first, False


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> int:
    require(settings, "database_url")
    try:
        email = normalize_email(args.email)
    except InvalidEmail as exc:
        print(f"stagedoor: {exc.detail}", file=sys.stderr)
        return 2
    password, generated = _read_password(args)
    problems = password_problems(password, min_length=settings.password_min_length, email=email)
    if problems:
        print("stagedoor: password " + "; ".join(problems), file=sys.stderr)
        return 2
    user_id, created = asyncio.run(_create_admin(settings, email, args.name, password))
    print(f"{'created' if created else 'updated'} admin {email} (id {user_id})")
    if generated:
        print(f"password (shown once): {password}")
    return 0


async def _create_admin(settings: Settings, email: str, name: str, password: str) -> tuple[str, bool]:
    pool = await make_pool(settings, min_size=0, max_size=2)
    try:
        users = UserStore(pool)
        password_hash = await Passwords.from_settings(settings).hash(password)
        existing = await users.by_email(email)
        if existing is None:
            user = await users.create(email=email, password_hash=password_hash, name=name,
                                      roles=["admin", "customer"])
            return user.id, True
        updated = await users.reset_admin(email=email, password_hash=password_hash,
                                          roles=check_roles([*existing.roles, "admin"]))
        assert updated is not None
        return updated.id, False
    finally:
        await pool.close()


def cmd_register_client(args: argparse.Namespace, settings: Settings) -> int:
    require(settings, "database_url")
    try:
        client_id, secret = asyncio.run(_register_client(settings, args.name, args.owner, args.scope))
    except (InvalidEmail, InvalidRoles, LookupError) as exc:
        print(f"stagedoor: {exc}", file=sys.stderr)
        return 2
    print(f"client_id:     {client_id}")
    print(f"client_secret: {secret}   (shown once; stored hashed)")
    print(f"scopes:        {' '.join(sorted(set(args.scope)))}")
    return 0


async def _register_client(settings: Settings, name: str, owner: str | None, scopes: list[str]) -> tuple[str, str]:
    pool = await make_pool(settings, min_size=0, max_size=2)
    try:
        owner_id = None
        if owner:
            user = await UserStore(pool).by_email(normalize_email(owner))
            if user is None:
                raise LookupError(f"no account with email {owner}")
            owner_id = user.id
        client, secret = await ClientStore(pool).register(name=name, owner_id=owner_id, scopes=scopes)
        return client.client_id, secret
    finally:
        await pool.close()


def cmd_revoke_client(args: argparse.Namespace, settings: Settings) -> int:
    require(settings, "database_url", "redis_url")
    if not asyncio.run(_revoke_client(settings, args.client_id)):
        print(f"stagedoor: no client {args.client_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.client_id}; its access tokens stop working within {settings.revocation_cache_s:g} s")
    return 0


async def _revoke_client(settings: Settings, client_id: str) -> bool:
    pool = await make_pool(settings, min_size=0, max_size=2)
    redis = make_redis(settings)
    try:
        now = time.time()
        client = await ClientStore(pool).revoke(client_id, now=datetime.fromtimestamp(now, UTC))
        if client is None:
            return False
        await revoke_subject(redis, RedisKeys(settings.redis_key_prefix), "client", client_id,
                             ttl_s=settings.access_token_ttl_s, at_ms=int(now * 1000))
        return True
    finally:
        await redis.aclose()
        await pool.close()
