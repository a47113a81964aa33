"""Fixtures of the reliability tests: ``start(**settings)`` runs the API with its
proxy on a loopback socket over a fake upstream (see live_api.py); ``private_pg``
is a PostgreSQL cluster of the test's own (private_pg.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from live_api import Server, Start
from loopback import serve_app
from private_pg import PrivatePostgres
from server_proc import require_private_postgres

from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy
from fastpaca_proxy.fake_upstream import FakeUpstream


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """``start(**settings)``: the API with its proxy on a loopback socket, and a fake upstream."""
    runners: list[web.AppRunner] = []
    async with FakeUpstream() as fake, aiohttp.ClientSession() as session:

        async def run(**options: Any) -> Server:
            options.setdefault("store", f"sqlite:///{tmp_path / f'{len(runners)}.db'}")
            options.setdefault("openai_base_url", fake.openai_base_url)
            options.setdefault("anthropic_base_url", fake.base_url)
            app = install_proxy(create_app(Settings(**options)))
            runner, port = await serve_app(app, shutdown_timeout=1.0)
            runners.append(runner)
            return Server(f"http://127.0.0.1:{port}", port, app, session, fake)

        try:
            yield run
        finally:
            for runner in runners:
                await runner.cleanup()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the test's own, which it may stop, crash and restart."""
    require_private_postgres()
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()
