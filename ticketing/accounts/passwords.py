"""Password rules and argon2id hashing (off the event loop).

Rules (NIST SP 800-63B style, no composition rules): at least ``password_min_length``
characters, at most 128; not a common or breached-style password (shipped list
``ticketing/data/common_passwords.txt``, compared case-insensitively, also with trailing
digits/symbols removed, so "Sunshine2027!" is refused); not built from the email's local
part; not fewer than 4 distinct characters. Every failing rule is reported (422).

Hashing: argon2id (argon2-cffi) with cost settings; hashes and verifications run in a
worker thread (argon2-cffi releases the GIL) behind a semaphore bounding concurrent
hashes, so a login burst costs bounded memory and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from stagedoor.settings import Settings

MAX_PASSWORD_CHARS = 128
MIN_DISTINCT_CHARS = 4
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "data" / "common_passwords.txt"


@functools.cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def password_problems(password: str, *, min_length: int, email: str = "") -> list[str]:
    """Every rule the password breaks (empty list = acceptable)."""
    problems: list[str] = []
    if len(password) < min_length:
        problems.append(f"must be at least {min_length} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        problems.append(f"must be at most {MAX_PASSWORD_CHARS} characters")
    lowered = password.lower()
    stripped = lowered.rstrip("0123456789!?.@#$%&*_- ")
    common = common_passwords()
    if lowered in common or (len(stripped) >= 4 and stripped in common):
        problems.append("is too common (found in a list of breached passwords)")
    if len(set(password)) < MIN_DISTINCT_CHARS:
        problems.append(f"must contain at least {MIN_DISTINCT_CHARS} different characters")
    local = email.partition("@")[0].lower()
    if len(local) >= 4 and local in lowered:
        problems.append("must not contain your email address")
    return problems


class Passwords:
    """argon2id hashing and verification in worker threads, at most ``concurrency`` at once."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, concurrency: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=max(memory_kib, 8 * parallelism),
                                      parallelism=parallelism, type=Type.ID)
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy_hash: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Passwords:
        return cls(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib,
                   parallelism=settings.argon2_parallelism, concurrency=settings.password_hash_concurrency)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify_sync, password_hash, password)

    async def prepare(self) -> None:
        """Compute the dummy hash at startup, so even the first unknown-email login costs one verification."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash("stagedoor-dummy-password-for-timing")

    async def verify_unknown(self, password: str) -> bool:
        """Spend the same time as a real verification (unknown email) and return False."""
        await self.prepare()
        assert self._dummy_hash is not None
        await self.verify(self._dummy_hash, password)
        return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
