"""``n > 1``: the first choice is the reply stored, and the usage figures,
which add up every choice, are not taken as its size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from .support import OPENAI_MODEL, chat_upstream, proxy_before

TEXTS = ["Paris.", "It is Paris, the capital.", "Paris, on the Seine."]
USAGE = {"prompt_tokens": 10, "completion_tokens": 600, "total_tokens": 610}


async def answer(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    head = {"id": "c", "created": 1, "model": OPENAI_MODEL}
    if not body.get("stream"):
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(TEXTS)
        ]
        return web.json_response(
            {**head, "object": "chat.completion", "choices": choices, "usage": USAGE}
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunks: list[dict[str, Any]] = []
    for index, text in reversed(list(enumerate(TEXTS))):  # choices interleave freely
        delta = {"role": "assistant", "content": text}
        chunks.append({"choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        chunks.append({"choices": [{"index": index, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({"choices": [], "usage": USAGE})
    for chunk in chunks:
        event = {**head, "object": "chat.completion.chunk", **chunk}
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    return response


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_the_first_choice_is_stored_with_its_own_size(tmp_path: Path, stream: bool) -> None:
    async with proxy_before(chat_upstream(answer), f"sqlite:///{tmp_path / 'n.db'}") as base:
        sdk = openai.AsyncOpenAI(base_url=f"{base}/v1/contexts/n/openai", api_key="k")
        async with sdk, httpx.AsyncClient(base_url=base) as api:
            question: Any = [{"role": "user", "content": "Capital of France?"}]
            if stream:
                async for _ in await sdk.chat.completions.create(
                    model=OPENAI_MODEL, messages=question, n=3, stream=True
                ):
                    pass
            else:
                reply = await sdk.chat.completions.create(
                    model=OPENAI_MODEL, messages=question, n=3
                )
                assert [c.message.content for c in reply.choices] == TEXTS
            log = (await api.get("/v1/contexts/n/messages")).json()["messages"]
            window = (await api.get("/v1/contexts/n/context")).json()
    assert log[-1]["parts"] == [{"type": "text", "text": "Paris."}]
    assert log[-1]["token_count"] < 20  # not the 600 the three choices took together
    assert window["used_tokens"] < 50
