"""Requests cut short are not server errors: a handler the server cancels as it
shuts down is logged and counted as 503 (the server going away), one whose
client left as 499 (nginx's "client closed request"); neither is a 500."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from loopback import serve_app

from fastpaca_core.http import create_app
from fastpaca_core.http.state import METRICS
from fastpaca_core.settings import Settings


async def test_a_handler_cancelled_at_shutdown_is_a_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "fastpaca")
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(3600)
        return web.Response()

    app = create_app(Settings(store=f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"))
    app.router.add_get("/slow", slow)
    runner, port = await serve_app(app, shutdown_timeout=0.2)
    async with aiohttp.ClientSession() as session:
        call = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/slow"))
        await started.wait()
        await runner.cleanup()
        with pytest.raises(aiohttp.ClientError):
            await call
    logged = [r for r in caplog.records if r.getMessage() == "request"]
    assert [r.fields["status"] for r in logged] == [503]  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    counted = [line for line in app[METRICS].render().decode().splitlines() if "/slow" in line]
    assert counted and all('status="503"' in line for line in counted), counted


async def test_a_client_that_left_is_a_499(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "fastpaca")

    async def lost(request: web.Request) -> web.Response:
        raise ConnectionError("Connection lost")  # as aiohttp's writer raises it

    app = create_app(Settings(store=f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"))
    app.router.add_get("/lost", lost)
    runner, port = await serve_app(app)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/lost") as response:
                assert response.status == 499  # (here the connection was still there)
    finally:
        await runner.cleanup()
    logged = [r for r in caplog.records if r.getMessage() == "request"]
    assert [r.fields["status"] for r in logged] == [499]  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
