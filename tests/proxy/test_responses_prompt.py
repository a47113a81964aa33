"""A Responses call of a stored prompt template (``prompt``) with no conversation.

The template, which the upstream fills in, is the whole prompt: there is no
turn to store nor to put the context before. Such a call reaches the
upstream as sent, whatever its context; the context is neither read nor
changed (nor created). With ``input`` too, the template rides along as the
request's preamble and the turn is stored as any other.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.responses import ResponsePromptParam

from .support import OPENAI_MODEL, Stack

PROMPT: ResponsePromptParam = {"id": "pmpt_abc123", "version": "2", "variables": {"city": "Oslo"}}
DEVELOPER = {"role": "developer", "content": "Be terse."}


def client(stack: Stack, context_id: str) -> openai.OpenAI:
    return stack.track(
        openai.OpenAI(base_url=stack.openai_url(context_id), api_key="sk", max_retries=0)
    )


def _context(stack: Stack, context_id: str) -> dict[str, Any]:
    reply = stack.api.get(f"/v1/contexts/{context_id}")
    reply.raise_for_status()
    context: dict[str, Any] = reply.json()
    return context


@pytest.mark.parametrize(
    "extra",
    [{}, {"input": []}, {"input": [DEVELOPER]}, {"previous_response_id": "resp_0"}],
    ids=["no-input", "empty-input", "developer-only", "previous-response"],
)
def test_a_prompt_alone_goes_upstream_as_sent(stack: Stack, extra: dict[str, Any]) -> None:
    sdk = client(stack, "prompt-1")
    sdk.responses.create(model=OPENAI_MODEL, input="Plan day 1 in Lisbon.")
    before = _context(stack, "prompt-1")
    reply = sdk.responses.create(model=OPENAI_MODEL, prompt=PROMPT, **extra)
    assert reply.status == "completed"
    assert stack.fake.last.json == {"model": OPENAI_MODEL, "prompt": PROMPT, **extra}
    streamed = sdk.responses.create(model=OPENAI_MODEL, prompt=PROMPT, stream=True, **extra)
    assert [e.type for e in streamed][-1] == "response.completed"
    assert stack.fake.last.json == {
        "model": OPENAI_MODEL,
        "prompt": PROMPT,
        "stream": True,
        **extra,
    }
    # (the SDK's count takes no ``prompt`` yet: a client sends it as an extra)
    count = sdk.responses.input_tokens.count(
        model=OPENAI_MODEL, extra_body={"prompt": PROMPT}, **extra
    )
    assert count.input_tokens >= 0
    assert stack.fake.last.path.endswith("/responses/input_tokens")
    assert stack.fake.last.json == {"model": OPENAI_MODEL, "prompt": PROMPT, **extra}
    after = _context(stack, "prompt-1")
    assert (after["version"], after["last_seq"]) == (before["version"], before["last_seq"])
    # the conversation goes on from the log as if the template call had not been
    sdk.responses.create(model=OPENAI_MODEL, prompt=PROMPT, input="And day 2?")
    sent = stack.fake.last.json
    assert sent["prompt"] == PROMPT
    texts = [item["content"] for item in sent["input"]]
    assert texts[0] == "Plan day 1 in Lisbon." and texts[2] == "And day 2?"
    assert [part["text"] for part in texts[1]] == ["echo: Plan day 1 in Lisbon."]
    assert [m["role"] for m in stack.log("prompt-1")] == ["user", "assistant"] * 2


def test_a_prompt_alone_creates_no_context(stack: Stack) -> None:
    sdk = client(stack, "prompt-new")
    reply = sdk.responses.create(model=OPENAI_MODEL, prompt=PROMPT)
    assert reply.status == "completed"
    assert stack.api.get("/v1/contexts/prompt-new").status_code == 404
    # without a prompt, a request with nothing to send is still refused, in OpenAI's shape
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model=OPENAI_MODEL, input=[DEVELOPER])  # type: ignore[list-item]
    assert refused.value.code == "invalid_request"
    assert stack.api.get("/v1/contexts/prompt-new").status_code == 404
