"""A streamed reply with an event the proxy cannot read (an upstream's odd
shape) still reaches its client whole; the turn is not stored, rather than
stored without what that event held, and the next call works."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from .support import OPENAI_MODEL, proxy_before

EVENTS = [
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
    },  # noqa: E501
    {"id": "c1", "object": "chat.completion.chunk", "choices": [None]},
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}],
    },  # noqa: E501
]


def _odd_upstream() -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "c2",
                    "object": "chat.completion",
                    "model": OPENAI_MODEL,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "fine"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in EVENTS:
            await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def test_an_unreadable_event_fails_the_turn_not_the_stream(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with proxy_before(_odd_upstream(), f"sqlite:///{tmp_path / 'odd.db'}") as base:
        url = f"{base}/v1/contexts/odd/openai/chat/completions"
        ask = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as session:
            with caplog.at_level("WARNING", logger="fastpaca.proxy"):
                async with session.post(url, json={**ask, "stream": True}) as resp:
                    assert resp.status == 200
                    received = await resp.read()
            assert received.count(b"data: ") == len(EVENTS) + 1  # every event, [DONE] too
            assert received.rstrip().endswith(b"data: [DONE]")
            assert "unreadable upstream stream event" in caplog.text
            async with session.get(f"{base}/v1/contexts/odd/messages") as resp:
                log = (await resp.json())["messages"]
            assert log == []  # the turn is stored whole or not at all
            async with session.post(url, json=ask) as resp:  # the next call is served
                assert resp.status == 200
                assert (await resp.json())["choices"][0]["message"]["content"] == "fine"
            async with session.get(f"{base}/v1/contexts/odd/messages") as resp:
                log = (await resp.json())["messages"]
            assert [m["role"] for m in log] == ["user", "assistant"]
