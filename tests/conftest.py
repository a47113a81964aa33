"""Shared fixtures: a store of every backend, each test on its own data.

Postgres is a real server (``FASTPACA_TEST_PG``, default 127.0.0.1:5432, database
``test``); each test gets its own schema, dropped afterwards. When the server
is down the Postgres cases are skipped locally, and fail under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fastpaca_core.mediatokens as mediatokens
from fastpaca_core import Engine, Store, open_store

PG_URL = os.environ.get("FASTPACA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
# the event loop the tests run on: asyncio's, or uvloop's (the server's own on
# SQLite: ``scripts/test`` runs the HTTP and proxy tests a second time on it)
TEST_LOOP = os.environ.get("FASTPACA_TEST_LOOP", "asyncio")
if TEST_LOOP not in ("asyncio", "uvloop"):
    raise pytest.UsageError(f"FASTPACA_TEST_LOOP must be asyncio or uvloop, not {TEST_LOOP!r}")

if TEST_LOOP == "uvloop":
    import uvloop

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
        """pytest-asyncio's hook: every async test and fixture runs on uvloop."""
        return {"uvloop": uvloop.new_event_loop}

    def pytest_report_header(config: pytest.Config) -> str:
        return f"event loop: uvloop {uvloop.__version__}"


_pg_state: dict[str, str | None] = {}


def postgres_problem() -> str | None:
    """None when Postgres answers, else why not (checked once per session)."""
    if "problem" not in _pg_state:

        async def probe() -> str | None:
            import asyncpg

            try:
                conn = await asyncpg.connect(PG_URL, timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                return f"PostgreSQL at {PG_URL} is unreachable: {exc}"
            await conn.close()
            return None

        _pg_state["problem"] = asyncio.run(probe())
    return _pg_state["problem"]


def require_postgres() -> None:
    problem = postgres_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"{problem} (CI=true: Postgres-backed tests must run)")
    pytest.skip(problem)


def pg_schema_url() -> str:
    schema = f"fp_test_{uuid.uuid4().hex[:16]}"
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A Postgres store URL with a fresh schema, dropped after the test."""
    require_postgres()
    url = pg_schema_url()
    yield url

    async def drop() -> None:
        from fastpaca_core.stores.postgres import PostgresStore

        store = PostgresStore(url)
        await store.open()
        try:
            await store.drop_schema()
        finally:
            await store.close()

    asyncio.run(drop())


BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fastpaca.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL whose data outlives the store object (SQLite file, Postgres)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fastpaca.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(store_url) as opened:
        yield opened


@pytest.fixture
def engine(store: Store) -> Engine:
    return Engine(store)


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that read a data URL's bytes to count a file
    (``mediatokens._held``), in order: a big file must be read off the loop."""
    names: list[str] = []
    held = mediatokens._held

    def spy(url: Any) -> tuple[str, bytes] | None:
        names.append(threading.current_thread().name)
        return held(url)

    monkeypatch.setattr(mediatokens, "_held", spy)
    return names
