"""Migration 2 upgrades a store created by migration 1, keeping its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from fastpaca_core import Engine, open_store
from fastpaca_core.stores import postgres, sqlite

from .support import text


async def _check(url: str) -> None:
    async with open_store(url) as store:
        engine = Engine(store)
        ctx = await engine.get_context("old")
        assert (ctx.calibration, ctx.calibration_samples, ctx.last_seq) == (1.0, 0, 1)
        await engine.append("old", text("user", "after the upgrade"))
        assert await engine.record_usage("old", 100, 120) == 1.2
        assert (await engine.list_summaries("old")).summaries == []
        assert await engine.take_lease("old", "me", 10)


async def test_sqlite_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # a store as migration 1 left it
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in sqlite.MIGRATIONS[0].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1)")
        now = "2025-01-01T00:00:00.000000Z"
        conn.execute(
            "INSERT INTO contexts VALUES ('old', 8000, 0.7, "
            """'{"strategy":"last_n","config":{"limit":200}}', '{}', 'active', 1, 1, 5, """
            f"'[]', 1, 0, '{now}', '{now}')"
        )
        conn.execute(
            "INSERT INTO messages VALUES ('old', 1, 'user', "
            f"""'[{{"type":"text","text":"hi"}}]', '{{}}', 5, 5, 1, '{now}')"""
        )
    await _check(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 2


@pytest.mark.postgres
async def test_postgres_upgrade(pg_url: str) -> None:
    store = postgres.PostgresStore(pg_url)
    conn = await asyncpg.connect(store._dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{store.schema}"')
        await conn.execute(f'SET search_path TO "{store.schema}"')
        await conn.execute("CREATE TABLE schema_version (version int NOT NULL)")
        await conn.execute(postgres.MIGRATIONS[0])
        await conn.execute("INSERT INTO schema_version VALUES (1)")
    finally:
        await conn.close()
    await _seed_v1(pg_url)
    await _check(pg_url)


async def _seed_v1(url: str) -> None:
    """A context and a message written the way migration 1's columns hold them."""
    store = postgres.PostgresStore(url)
    conn = await asyncpg.connect(store._dsn, server_settings={"search_path": str(store.schema)})
    try:
        await conn.execute(
            "INSERT INTO contexts VALUES ('old', 8000, 0.7, "
            """'{"strategy":"last_n","config":{"limit":200}}', '{}', 'active', 1, 1, 5, """
            "'[]', 1, 0, now(), now())"
        )
        await conn.execute(
            "INSERT INTO messages VALUES ('old', 1, 'user', "
            """'[{"type":"text","text":"hi"}]', '{}', 5, 5, 1, now())"""
        )
    finally:
        await conn.close()
