"""A relayed stream's headers: they leave with its first event when that comes
at once (one write), without it when the upstream holds that event back, and
before the cut when the upstream breaks off first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web

from .support import chat_upstream, proxy_before

CHUNK = b'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[]}\n\n'
BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
# pass-through, and a context's stream
PATHS = ("/v1/chat/completions", "/v1/contexts/held/openai/chat/completions")
AUTH = {"Authorization": "Bearer k"}


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

    async with proxy_before(chat_upstream(slow), f"sqlite:///{tmp_path / 'h.db'}") as base:
        async with aiohttp.ClientSession() as client:
            for path in PATHS:
                release.clear()
                held.clear()
                async with asyncio.timeout(10):  # headers held for the event would hang here
                    resp = await client.post(f"{base}{path}", json=BODY, headers=AUTH)
                async with resp:
                    assert held.is_set() and not release.is_set()
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/event-stream")
                    release.set()
                    assert await resp.read() == CHUNK + b"data: [DONE]\n\n"


async def test_an_upstream_that_breaks_off_before_its_first_event(tmp_path: Path) -> None:
    """The client sees the stream start and break, as it would calling the
    upstream itself: not a server that never answered, which SDKs retry."""
    calls = 0

    async def broken(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        await asyncio.sleep(0.01)  # well within the proxy's 50 ms hold
        assert request.transport is not None
        request.transport.close()
        return out

    async with proxy_before(chat_upstream(broken), f"sqlite:///{tmp_path / 'b.db'}") as base:
        async with aiohttp.ClientSession() as client:
            for path in PATHS:
                async with client.post(f"{base}{path}", json=BODY, headers=AUTH) as resp:
                    assert resp.status == 200
                    with pytest.raises(aiohttp.ClientPayloadError):
                        await resp.read()
        calls = 0
        sdk = openai.AsyncOpenAI(
            base_url=f"{base}/v1/contexts/retried/openai", api_key="k", max_retries=2
        )
        async with sdk:
            stream = await sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            with pytest.raises(openai.APIError):  # the stream breaks, as it did upstream
                async for _ in stream:
                    pass
        assert calls == 1  # the SDK did not take the cut for "no answer" and retry
