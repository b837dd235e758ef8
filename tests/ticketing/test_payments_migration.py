"""Migration 0010 on a database that already sold: captured payments become succeeded, a refund that
failed before it gets a gateway key and is retried by the worker like any other."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from stagedoor.embedded import with_database
from stagedoor.migrate import MIGRATIONS_DIR, migrate
from ticketing.payments.records import PaymentRecords


def _migrations_upto(tmp_path: Path, version: int) -> Path:
    """A directory with the migrations up to ``version``, to migrate a database to where it stood then."""
    upto = tmp_path / f"upto{version:04d}"
    upto.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) <= version:
            shutil.copy(path, upto / path.name)
    return upto


@asynccontextmanager
async def _scratch_database(pg_server_url: str) -> AsyncIterator[asyncpg.Connection]:
    name = f"sdt_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(with_database(pg_server_url, name))
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_0010_keeps_old_payments_and_makes_old_failed_refunds_retryable(pg_server_url: str,
                                                                             tmp_path: Path) -> None:
    before, upto = _migrations_upto(tmp_path, 9), _migrations_upto(tmp_path, 10)
    async with _scratch_database(pg_server_url) as conn:
        await migrate(conn, before)
        user = await conn.fetchval("INSERT INTO users (email, password_hash, name, roles) "
                                   "VALUES ('old@example.test', 'x', 'Old', '{customer}') RETURNING id")
        await conn.execute("""
            INSERT INTO payments (order_id, user_id, gateway, charge_id, amount, currency, status, reason)
            VALUES (NULL, $1, 'mock', 'ch_old_ok', 100, 'EUR', 'captured', NULL),
                   (NULL, $1, 'mock', 'ch_old_owed', 200, 'EUR', 'refund_failed', 'seat_sold'),
                   (NULL, $1, 'mock', 'ch_old_back', 300, 'EUR', 'refunded', 'seat_sold')""", user)
        assert 10 in await migrate(conn, upto)
        rows = {r["charge_id"]: dict(r) for r in await conn.fetch(
            "SELECT charge_id, status, gateway_key, next_attempt_at IS NOT NULL AS due FROM payments")}
        assert rows["ch_old_ok"]["status"] == "succeeded" and rows["ch_old_ok"]["gateway_key"] is None
        assert rows["ch_old_owed"] == {"charge_id": "ch_old_owed", "status": "refund_failed",
                                       "gateway_key": "legacy:ch_old_owed", "due": True}
        assert rows["ch_old_back"]["status"] == "refunded" and not rows["ch_old_back"]["due"]
        # what the worker's refund retries read: the old row, with what it has
        [due] = await PaymentRecords(conn).refunds_due(10, 60)  # type: ignore[arg-type]
        assert (due.gateway_key, due.charge_id, due.amount, due.currency, due.reason) == (
            "legacy:ch_old_owed", "ch_old_owed", 200, "EUR", "seat_sold")


async def test_0011_moves_unsettled_payments_to_charge_attempts(pg_server_url: str, tmp_path: Path) -> None:
    """Pending, unknown and failed rows of 0010 become charge attempts (and leave payments); a refunded
    charge keeps its payments row and gets its attempt, so the purchase's next attempt takes seq + 1."""
    upto10, upto11 = _migrations_upto(tmp_path, 10), _migrations_upto(tmp_path, 11)
    async with _scratch_database(pg_server_url) as conn:
        await migrate(conn, upto10)
        user = await conn.fetchval("INSERT INTO users (email, password_hash, name, roles) "
                                   "VALUES ('mid@example.test', 'x', 'Mid', '{customer}') RETURNING id")
        for key, status, charge in (("a", "pending", None), ("b", "unknown", "ch_b"), ("c", "failed", None),
                                    ("d", "refunded", "ch_d")):
            await conn.execute("""
                INSERT INTO payments (user_id, gateway, charge_id, amount, currency, status, purchase_key, seq,
                                      gateway_key, hold_id, event_id, idempotency_key, fingerprint, email,
                                      subtotal, discount)
                VALUES ($1, 'mock', $2, 500, 'EUR', $3, $4, 0, $4 || ':0', 'h-' || $4, 7, 'k-' || $4, 'fp',
                        'mid@example.test', 500, 0)""", user, charge, status, key)
        assert 11 in await migrate(conn, upto11)
        attempts = {r["gateway_key"]: (r["state"], r["charge_id"]) for r in await conn.fetch(
            "SELECT gateway_key, state, charge_id FROM charge_attempts")}
        assert attempts == {"a:0": ("pending", None), "b:0": ("unknown", "ch_b"), "c:0": ("failed", None),
                            "d:0": ("pending", "ch_d")}
        assert [r["gateway_key"] for r in await conn.fetch("SELECT gateway_key FROM payments")] == ["d:0"]
        standing = {r["gateway_key"]: r["status"] for r in await conn.fetch(
            "SELECT gateway_key, status FROM purchase_payments")}
        assert standing == {"a:0": "pending", "b:0": "unknown", "c:0": "failed", "d:0": "refunded"}
        records = PaymentRecords(conn)  # type: ignore[arg-type]
        [stale] = [r.gateway_key for r in await records.stale(0, 10) if r.status == "pending"]
        assert stale == "a:0"  # the refunded charge is settled: not the reconciler's
