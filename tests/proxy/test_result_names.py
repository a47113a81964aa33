"""A tool result is stored with its tool's name, wherever the call it answers is.

A client that sends only its newest message (or, on the Responses API, chains
with ``previous_response_id``) sends its tool results without the call they
answer: the call is in the log. The stored ``tool-result`` part still names
the tool, as it does when the client resends the call with its history.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai

from fastpaca_proxy.fake_upstream import Reply, ToolCall

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack


def _result_names(stack: Stack, context_id: str) -> list[Any]:
    return [
        part.get("toolName")
        for message in stack.log(context_id)
        for part in message["parts"]
        if part["type"] == "tool-result"
    ]


def test_chat_results_sent_alone_keep_the_tool_name(stack: Stack) -> None:
    client = stack.track(
        openai.OpenAI(base_url=stack.openai_url("names-chat"), api_key="x", max_retries=0)
    )
    stack.fake.script(
        Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"}), ToolCall("time", {})])
    )
    first = client.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "Weather and time?"}]
    )
    calls = first.choices[0].message.tool_calls or []
    assert len(calls) == 2
    client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "tool", "tool_call_id": call.id, "content": "fine"} for call in calls],
    )
    assert _result_names(stack, "names-chat") == ["weather", "time"]


def test_anthropic_results_sent_alone_keep_the_tool_name(stack: Stack) -> None:
    client = stack.track(
        anthropic.Anthropic(
            base_url=stack.anthropic_url("names-anthropic"), api_key="x", max_retries=0
        )
    )
    stack.fake.script(Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"})]))
    first = client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather?"}],
    )
    use = next(block for block in first.content if block.type == "tool_use")
    client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
            }
        ],
    )
    assert _result_names(stack, "names-anthropic") == ["weather"]


def test_responses_output_after_previous_response_keeps_the_tool_name(stack: Stack) -> None:
    client = stack.track(
        openai.OpenAI(base_url=stack.openai_url("names-responses"), api_key="x", max_retries=0)
    )
    stack.fake.script(Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"})]))
    first = client.responses.create(model=OPENAI_MODEL, input="Weather?")
    call = next(item for item in first.output if item.type == "function_call")
    client.responses.create(
        model=OPENAI_MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert _result_names(stack, "names-responses") == ["weather"]


def test_a_result_for_an_unknown_call_is_stored_as_before(stack: Stack) -> None:
    client = stack.track(
        openai.OpenAI(base_url=stack.openai_url("names-unknown"), api_key="x", max_retries=0)
    )
    client.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "Hello"}]
    )
    client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "tool", "tool_call_id": "call_nobody_made", "content": "x"}],
    )
    assert _result_names(stack, "names-unknown") == [""]
