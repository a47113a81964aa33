"""An empty Chat Completions reply (a reasoning model whose
``max_completion_tokens`` went to reasoning) is stored and replayed alike,
streamed or not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from fastpaca_proxy.fake_upstream import Reply, Usage

from .support import OPENAI_MODEL, Stack, chat_upstream, proxy_before


def client(stack: Stack, context_id: str) -> openai.OpenAI:
    return stack.track(
        openai.OpenAI(base_url=stack.openai_url(context_id), api_key="sk-client", max_retries=0)
    )


def empty_turn(sdk: openai.OpenAI, stream: bool) -> str | None:
    messages: Any = [{"role": "user", "content": "think hard"}]
    if not stream:
        reply = sdk.chat.completions.create(
            model=OPENAI_MODEL, messages=messages, max_completion_tokens=16
        )
        return reply.choices[0].message.content
    chunks = sdk.chat.completions.create(
        model=OPENAI_MODEL, messages=messages, max_completion_tokens=16, stream=True
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices]
    return (
        "".join(p for p in pieces if p is not None) if any(p is not None for p in pieces) else None
    )


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_an_empty_reply_stays_an_assistant_turn(stack: Stack, stream: bool) -> None:
    sdk = client(stack, f"empty-{stream}")
    stack.fake.script(
        Reply(text="", finish_reason="length", usage=Usage(prompt_tokens=5, completion_tokens=16))
    )
    assert empty_turn(sdk, stream) == ""  # what the SDK hands the caller

    log = stack.log(f"empty-{stream}")
    assert [(m["role"], m["parts"]) for m in log] == [
        ("user", [{"type": "text", "text": "think hard"}]),
        ("assistant", [{"type": "text", "text": ""}]),
    ]
    assert log[1]["token_count"] == 16

    # the next turn, sending only its newest message, still shows the model
    # that it answered (roles alternate), as the resent history would
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "well?"}])
    assert stack.fake.last.json["messages"] == [
        {"role": "user", "content": "think hard"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "well?"},
    ]


def test_a_resent_empty_streamed_reply_is_history_not_a_new_turn(stack: Stack) -> None:
    sdk = client(stack, "empty-resent")
    stack.fake.script(Reply(text="", finish_reason="length"))
    assert empty_turn(sdk, stream=True) == ""
    sdk.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[
            {"role": "user", "content": "think hard"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "well?"},
        ],
    )
    assert [m["role"] for m in stack.log("empty-resent")] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


async def test_reasoning_without_an_answer_is_stored_as_it_came(tmp_path: Path) -> None:
    """A reasoning model (``reasoning_content``, DeepSeek's) cut off before it
    answered: streamed, the reply is stored as the same reply not streamed."""
    received: list[dict[str, Any]] = []
    message = {"role": "assistant", "content": "", "reasoning_content": "Let me see"}

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        received.append(body)
        head = {"id": "c", "created": 1, "model": OPENAI_MODEL}
        if not body.get("stream"):
            choice = {"index": 0, "message": message, "finish_reason": "length"}
            return web.json_response({**head, "object": "chat.completion", "choices": [choice]})
        deltas = [
            {"role": "assistant", "content": "", "reasoning_content": "Let "},
            {"content": "", "reasoning_content": "me see"},
            {},
        ]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for number, delta in enumerate(deltas):
            finish = "length" if number == len(deltas) - 1 else None
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {**head, "object": "chat.completion.chunk", "choices": [choice]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async with proxy_before(chat_upstream(answer), f"sqlite:///{tmp_path / 'r.db'}") as base:
        async with httpx.AsyncClient(base_url=base) as api:
            for stream in (False, True):
                sdk = openai.AsyncOpenAI(
                    base_url=f"{base}/v1/contexts/r-{stream}/openai", api_key="k", max_retries=0
                )
                async with sdk:
                    question: Any = [{"role": "user", "content": "think"}]
                    if stream:
                        async for _ in await sdk.chat.completions.create(
                            model=OPENAI_MODEL, messages=question, stream=True
                        ):
                            pass
                    else:
                        await sdk.chat.completions.create(model=OPENAI_MODEL, messages=question)
                    await sdk.chat.completions.create(
                        model=OPENAI_MODEL, messages=[{"role": "user", "content": "so?"}]
                    )
            logs = [
                (await api.get(f"/v1/contexts/r-{stream}/messages")).json()["messages"]
                for stream in (False, True)
            ]
    assert logs[0][1]["parts"] == logs[1][1]["parts"]
    assert received[1]["messages"] == received[3]["messages"]
    assert received[3]["messages"][1] == message
