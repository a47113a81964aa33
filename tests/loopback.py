"""Serve an aiohttp app on a loopback socket for a test: one helper for every suite."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fastpaca_core.http.runner import Runner

__all__ = ["serve_app"]


async def serve_app(app: web.Application, **runner_options: Any) -> tuple[web.AppRunner, int]:
    """Start ``app`` on 127.0.0.1, any free port, with the runner ``fastpaca
    serve`` uses; the caller cleans the runner up."""
    runner_options.setdefault("access_log", None)
    runner = Runner(app, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]
