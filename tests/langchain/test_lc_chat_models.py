"""LangChain's own chat models pointed at the proxy: ``ChatOpenAI`` (Chat
Completions and ``use_responses_api=True``) and ``ChatAnthropic`` with their
``base_url`` under a context, as a LangChain app runs them unchanged.

Each test checks what reached the (fake) upstream, what the log holds and
what LangChain gave back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from proxy.support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack, run_stack
from pydantic import BaseModel

from fastpaca_proxy.fake_upstream import Reply, ToolCall

KINDS = ["chat", "responses", "anthropic"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with run_stack(f"sqlite:///{tmp_path / 'proxy.db'}") as running:
        yield running


def chat_model(stack: Stack, kind: str, context_id: str) -> BaseChatModel:
    if kind == "anthropic":
        return ChatAnthropic(  # type: ignore[call-arg]
            model=ANTHROPIC_MODEL,
            base_url=stack.anthropic_url(context_id),
            api_key="sk-test",  # type: ignore[arg-type]
            max_retries=0,
            max_tokens=256,
        )
    return ChatOpenAI(
        model=OPENAI_MODEL,
        base_url=stack.openai_url(context_id),
        api_key="sk-test",  # type: ignore[arg-type]
        max_retries=0,
        use_responses_api=kind == "responses",
    )


def sent(stack: Stack) -> list[dict[str, Any]]:
    """The conversation the upstream received last."""
    body = stack.fake.last.json
    items: list[dict[str, Any]] = body["input"] if "input" in body else body["messages"]
    return items


def unanswered_calls(kind: str, messages: list[dict[str, Any]]) -> list[str]:
    """The tool calls of ``messages`` the provider would refuse: not followed
    by their results where its API wants them."""
    bad: list[str] = []
    if kind == "responses":
        for index, item in enumerate(messages):
            if item.get("type") == "function_call":
                later = [i.get("call_id") for i in messages[index + 1 :]]
                if item["call_id"] not in later:
                    bad.append(item["call_id"])
        return bad
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        if kind == "chat":
            ids = [call["id"] for call in message.get("tool_calls") or []]
            answered = set()
            for after in messages[index + 1 :]:
                if after.get("role") != "tool":
                    break
                answered.add(after.get("tool_call_id"))
        else:
            content = message["content"] if isinstance(message["content"], list) else []
            ids = [block["id"] for block in content if block.get("type") == "tool_use"]
            following = messages[index + 1] if index + 1 < len(messages) else {}
            blocks = following.get("content") if following.get("role") == "user" else None
            answered = {
                block.get("tool_use_id")
                for block in (blocks if isinstance(blocks, list) else [])
                if isinstance(block, dict) and block.get("type") == "tool_result"
            }
        bad += [call_id for call_id in ids if call_id not in answered]
    return bad


class Mood(BaseModel):
    mood: str


@pytest.mark.parametrize("kind", KINDS)
def test_structured_output_call_does_not_break_the_next_turns(stack: Stack, kind: str) -> None:
    """``with_structured_output`` by function calling (ChatAnthropic's
    default) stores a reply that calls a tool no one answers. An app that
    sends only its newest message (Fastpaca holds the conversation) then asks
    on: the upstream must not get that call without a result, which every
    provider refuses (400), on this turn and every later one."""
    context_id = f"mood-{kind}"
    model = chat_model(stack, kind, context_id)
    model.invoke([SystemMessage("Be terse."), HumanMessage("Hi, I'm Ann.")])
    stack.fake.script(
        Reply(
            reasoning="Weighing her words.",
            tool_calls=[ToolCall("Mood", {"mood": "happy"}, id="call_mood")],
        )
    )
    mood = model.with_structured_output(Mood, method="function_calling").invoke(
        [HumanMessage("How do I feel?")]
    )
    assert mood == Mood(mood="happy")

    reply = model.invoke([SystemMessage("Be terse."), HumanMessage("Plan my day.")])
    # (on Anthropic the two user turns left side by side go as one)
    assert reply.text.startswith("echo: ") and reply.text.endswith("Plan my day.")
    conversation = sent(stack)
    assert unanswered_calls(kind, conversation) == []
    texts = [str(m.get("content")) for m in conversation]
    assert any("How do I feel?" in text for text in texts)  # the turn itself stays
    # nor the reasoning that came with the call, alone (a reasoning item must
    # be followed by the item it led to)
    assert "Weighing her words." not in json.dumps(conversation)
    model.invoke([SystemMessage("Be terse."), HumanMessage("And tomorrow?")])
    assert unanswered_calls(kind, sent(stack)) == []

    # the log keeps the call as the model made it
    log = stack.log(context_id)
    calls = [p for m in log for p in m["parts"] if p["type"] == "tool-Mood"]
    assert [(c["toolCallId"], c["input"]) for c in calls] == [("call_mood", {"mood": "happy"})]
    assert [m["role"] for m in log] == ["user", "assistant"] * 4


def test_chat_anthropic_stream_reports_the_upstream_usage(stack: Stack) -> None:
    """``ChatAnthropic.stream`` takes a stream's usage from ``message_delta``
    alone, where Anthropic repeats the input figures: through the proxy it
    reports the upstream's prompt tokens (not 0), and the turn is stored
    with the reply's output tokens."""
    model = chat_model(stack, "anthropic", "streamed")
    chunks = list(model.stream([SystemMessage("Be terse."), HumanMessage("Plan day 1.")]))
    reply = chunks[0]
    for chunk in chunks[1:]:
        reply = reply + chunk
    turn = stack.fake.last.turn
    assert turn is not None and turn.prompt_tokens > 0
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == turn.prompt_tokens
    assert reply.usage_metadata["output_tokens"] == turn.completion_tokens
    assert reply.text == "echo: Plan day 1."
    log = stack.log("streamed")
    assert [(m["role"], m["token_count"]) for m in log][1] == ("assistant", turn.completion_tokens)
