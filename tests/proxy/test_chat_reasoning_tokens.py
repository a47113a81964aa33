"""A reasoning model's hidden reasoning is billed in ``completion_tokens``
but never sent again: the stored reply counts only what the context holds."""

from __future__ import annotations

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


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_hidden_reasoning_is_not_counted_in_the_context(stack: Stack, stream: bool) -> None:
    context_id = f"thinking-{stream}"
    sdk = client(stack, context_id)
    usage = Usage(prompt_tokens=12, completion_tokens=1503, reasoning_tokens=1500)
    stack.fake.script(Reply(text="Paris.", usage=usage))
    question: Any = [{"role": "user", "content": "Capital of France?"}]
    if stream:
        for _ in sdk.chat.completions.create(model=OPENAI_MODEL, messages=question, stream=True):
            pass
    else:
        reply = sdk.chat.completions.create(model=OPENAI_MODEL, messages=question)
        assert reply.usage is not None and reply.usage.completion_tokens == 1503  # unchanged

    answer = stack.log(context_id)[-1]
    assert answer["parts"] == [{"type": "text", "text": "Paris."}]
    assert answer["token_count"] == 3  # 1503 billed, 1500 of them reasoning
    assert stack.window(context_id)["used_tokens"] < 100


@pytest.mark.parametrize(
    "held",
    [
        {"reasoning_content": "France: Paris."},  # DeepSeek's
        {"reasoning": "France: Paris.", "reasoning_details": [{"type": "reasoning.text"}]},
    ],
    ids=["reasoning_content", "openrouter"],
)
async def test_reasoning_the_context_keeps_is_counted(tmp_path: Path, held: dict[str, Any]) -> None:
    """Reasoning that comes back with the reply is stored and sent again, so
    its tokens stay in the reply's count."""
    message = {"role": "assistant", "content": "Paris.", **held}
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 9,
        "completion_tokens_details": {"reasoning_tokens": 6},
    }

    async def answer(request: web.Request) -> web.Response:
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        body = {"id": "c", "object": "chat.completion", "created": 1, "model": OPENAI_MODEL}
        return web.json_response({**body, "choices": [choice], "usage": usage})

    async with proxy_before(chat_upstream(answer), f"sqlite:///{tmp_path / 'k.db'}") as base:
        sdk = openai.AsyncOpenAI(base_url=f"{base}/v1/contexts/k/openai", api_key="k")
        async with sdk, httpx.AsyncClient(base_url=base) as api:
            await sdk.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "Capital of France?"}]
            )
            log = (await api.get("/v1/contexts/k/messages")).json()["messages"]
    assert log[-1]["token_count"] == 9
