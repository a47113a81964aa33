"""A relayed stream's headers: they leave with its first event when that comes
at once (one write), and without it when the upstream holds that event back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp import web
from loopback import serve_app

from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy

CHUNK = b'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[]}\n\n'


async def test_headers_do_not_wait_for_a_first_event_the_upstream_holds(tmp_path: Path) -> None:
    release = asyncio.Event()
    held = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)  # headers now; the first event only when released
        held.set()
        await release.wait()
        await out.write(CHUNK)
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return out

    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", slow)
    up_runner, up_port = await serve_app(upstream)
    config = Settings(
        store=f"sqlite:///{tmp_path / 'h.db'}", openai_base_url=f"http://127.0.0.1:{up_port}/v1"
    )
    runner, port = await serve_app(install_proxy(create_app(config)))
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    try:
        async with aiohttp.ClientSession() as client:
            # pass-through, and a context's stream
            for path in ("/v1/chat/completions", "/v1/contexts/held/openai/chat/completions"):
                release.clear()
                held.clear()
                url = f"http://127.0.0.1:{port}{path}"
                async with asyncio.timeout(10):  # headers held for the event would hang here
                    resp = await client.post(url, json=body, headers={"Authorization": "Bearer k"})
                async with resp:
                    assert held.is_set() and not release.is_set()
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/event-stream")
                    release.set()
                    assert await resp.read() == CHUNK + b"data: [DONE]\n\n"
    finally:
        await runner.cleanup()
        await up_runner.cleanup()
