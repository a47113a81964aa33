"""The HTTP API over a real loopback socket.

``serve(**settings)`` starts ``create_app`` with aiohttp's ``AppRunner`` and a
``TCPSite`` on 127.0.0.1 port 0 (SQLite in the test's tmp dir unless a store
is given) and returns a :class:`Api` talking to it with ``aiohttp.ClientSession``.
Every error response any test sees is recorded in ``http_support.ERRORS``, and
``test_http_zz_error_shape.py`` holds each one to the JSON error shape.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_support import Api, Serve
from loopback import serve_app

from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """Start servers on loopback sockets; all are stopped after the test."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(**options: Any) -> Api:
        options.setdefault("store", f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}")
        options.setdefault("port", 0)
        app = create_app(Settings(**options))
        runner, port = await serve_app(app)
        runners.append(runner)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Api(f"http://127.0.0.1:{port}", session, app, runner)

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def api(serve: Serve) -> Api:
    """A server on SQLite in the test's tmp dir."""
    return await serve()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file, or a PostgreSQL schema of the test's own."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'any.db'}"


@pytest.fixture
async def any_api(any_store: str, serve: Serve) -> Api:
    """The same tests on SQLite and on PostgreSQL (set up before, dropped after the server)."""
    return await serve(store=any_store)


@pytest.fixture
def cid() -> str:
    return f"ctx-{uuid.uuid4().hex[:12]}"
