"""Streamed tool calls whose deltas carry no ``index``, as Gemini's
OpenAI-compatible endpoint sends them: each call whole in its own chunk, or a
call's arguments spread over chunks without an id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
from aiohttp import web

from .support import chat_upstream, proxy_before

MODEL = "gemini-test"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-g",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _call(call_id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    call: dict[str, Any] = {"function": function}
    if call_id is not None:
        call.update(id=call_id, type="function")
    if name is not None:
        function["name"] = name
    return call


CHUNKS = [
    _chunk({"role": "assistant", "tool_calls": [_call("call-1", "weather", '{"city":"Paris"}')]}),
    _chunk({"role": "assistant", "tool_calls": [_call("call-2", "clock", '{"tz":')]}),
    _chunk({"tool_calls": [_call(None, None, '"UTC"}')]}),  # the same call, continued
    _chunk({"role": "assistant"}, finish="stop"),
    {**_chunk({}), "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 6}},
]


async def test_each_indexless_call_is_stored_as_its_own_call(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        received.append(await request.json())
        if len(received) > 1:
            message = {"role": "assistant", "content": "Sunny, noon."}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            body = {"id": "c2", "object": "chat.completion", "created": 1, "model": MODEL}
            return web.json_response({**body, "choices": [choice]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in CHUNKS:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async with proxy_before(chat_upstream(answer), f"sqlite:///{tmp_path / 'g.db'}") as base:
        sdk = openai.AsyncOpenAI(
            base_url=f"{base}/v1/contexts/g/openai", api_key="k", max_retries=0
        )
        async with sdk, httpx.AsyncClient(base_url=base) as api:
            stream = await sdk.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Weather and time?"}],
                stream=True,
            )
            async for _ in stream:
                pass
            log = (await api.get("/v1/contexts/g/messages")).json()["messages"]
            assert log[1]["role"] == "assistant"
            assert log[1]["parts"] == [
                {
                    "type": "tool-weather",
                    "toolCallId": "call-1",
                    "state": "input-available",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool-clock",
                    "toolCallId": "call-2",
                    "state": "input-available",
                    "input": {"tz": "UTC"},
                },
            ]
            # the client answers both calls, sending only its newest messages
            results: Any = [
                {"role": "tool", "tool_call_id": "call-1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call-2", "content": "noon"},
            ]
            await sdk.chat.completions.create(model=MODEL, messages=results)
    assert received[1]["messages"] == [
        {"role": "user", "content": "Weather and time?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call-1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call-2",
                    "type": "function",
                    "function": {"name": "clock", "arguments": '{"tz":"UTC"}'},
                },
            ],
        },
        *results,
    ]
