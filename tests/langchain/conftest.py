"""Fixtures for the LangChain integration: a connection target of every kind.

``target`` is what a history connects to: an embedded SQLite file, an embedded
Postgres schema, or a real Fastpaca server (``create_app`` on a loopback port,
served from a background thread so that sync and async clients alike reach it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from proxy.support import serve_in_thread

from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings
from langchain_fastpaca import Connection, connect


@dataclass(frozen=True)
class Target:
    kind: str  # sqlite | postgres | remote
    url: str

    def connection(self) -> Connection:
        return connect(self.url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'langchain.db'}"


@pytest.fixture
def server_url(sqlite_url: str) -> Iterator[str]:
    """A real Fastpaca server over a fresh SQLite file."""
    with serve_in_thread(lambda: create_app(Settings(store=sqlite_url))) as base:
        yield base


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "remote"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "sqlite":
        return Target("sqlite", request.getfixturevalue("sqlite_url"))
    if request.param == "postgres":
        return Target("postgres", request.getfixturevalue("pg_url"))
    return Target("remote", request.getfixturevalue("server_url"))
