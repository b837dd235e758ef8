from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from stagedoor.migrate import MIGRATIONS_DIR, MigrationError, discover, migrate


async def test_the_template_database_has_every_migration(db: asyncpg.Pool) -> None:
    versions = [r["version"] for r in await db.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in discover(MIGRATIONS_DIR)]


async def test_migrating_again_applies_nothing(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn) == []
    finally:
        await conn.close()


async def test_concurrent_migrators_apply_each_migration_once(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE mig_a (id int);")
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE mig_b (id int); SELECT pg_sleep(0.1);")
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    # a throwaway schema_migrations for this directory: use a separate schema
    for c in conns:
        await c.execute("CREATE SCHEMA IF NOT EXISTS migtest; SET search_path TO migtest")
    try:
        results = await asyncio.gather(*(migrate(c, tmp_path) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert sorted(v for r in results for v in r) == [1, 2]


async def test_an_edited_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE mig_c (id int);")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE SCHEMA migtest2; SET search_path TO migtest2")
        await migrate(conn, tmp_path)
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE mig_c (id bigint);")
        with pytest.raises(MigrationError, match="edited"):
            await migrate(conn, tmp_path)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE mig_ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE mig_bad (id int); SELECT no_such_function();")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE SCHEMA migtest3; SET search_path TO migtest3")
        with pytest.raises(asyncpg.PostgresError):
            await migrate(conn, tmp_path)
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'migtest3'")}
        assert tables == {"schema_migrations", "mig_ok"}
        assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")] == [1]
    finally:
        await conn.close()


def test_badly_named_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(MigrationError):
        discover(tmp_path)
