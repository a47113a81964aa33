"""What the upstream gets of a request's new turn, over real sockets with the
real SDKs: a tool result whose call a compaction cut from the window goes with
its call (read back from the log), never alone and never as a 500; history the
log did not hold is cut to the budget like the log's, only the turn in flight
kept whole."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from fastpaca_core.model import Message
from fastpaca_core.tokens import TokenCounter
from fastpaca_proxy.fake_upstream import Reply, ToolCall

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack, openai_client

BIG_QUERY = {"q": "word " * 300}  # a call of about 375 tokens: alone over a budget of 60


def tiny_context(stack: Stack, context_id: str) -> None:
    reply = stack.api.put(f"/v1/contexts/{context_id}", json={"token_budget": 60})
    reply.raise_for_status()


@pytest.mark.parametrize("resend", [False, True], ids=["newest-only", "resend"])
@pytest.mark.parametrize("words", [3, 200], ids=["small-result", "large-result"])
def test_chat_result_of_a_cut_call_goes_with_its_call(
    stack: Stack, resend: bool, words: int
) -> None:
    context_id = f"orphan-chat-{words}-{resend}"
    tiny_context(stack, context_id)
    sdk = openai_client(stack, context_id)
    stack.fake.script(Reply(tool_calls=[ToolCall("search", BIG_QUERY, id="call_big")]))
    history: list[dict[str, Any]] = [{"role": "user", "content": "find it"}]
    first = sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)
    history.append(first.choices[0].message.model_dump(exclude_none=True))
    # the call is in the log only; the user's request stays pinned
    assert [m["role"] for m in stack.window(context_id)["messages"]] == ["user"]
    tool = {"role": "tool", "tool_call_id": "call_big", "content": "ok " * words}
    history.append(tool)
    stack.fake.script("found")
    raw = sdk.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=history if resend else [tool]
    )
    assert raw.parse().choices[0].message.content == "found"
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["assistant", "tool"]
    assert [c["id"] for c in sent[0]["tool_calls"]] == ["call_big"]
    assert json.loads(sent[0]["tool_calls"][0]["function"]["arguments"]) == BIG_QUERY
    assert sent[1] == tool
    log = stack.log(context_id)
    assert [m["role"] for m in log] == ["user", "assistant", "tool", "assistant"]
    # stored with its exact count, whether or not it was counted before it went out
    stored = Message(log[2]["role"], log[2]["parts"], log[2]["metadata"], None)
    assert log[2]["token_count"] == TokenCounter().count_fresh(stored)


@pytest.mark.parametrize("words", [3, 200], ids=["small-result", "large-result"])
def test_anthropic_result_of_a_cut_call_goes_with_its_call(stack: Stack, words: int) -> None:
    context_id = f"orphan-anthropic-{words}"
    tiny_context(stack, context_id)
    sdk = stack.track(
        anthropic.Anthropic(base_url=stack.anthropic_url(context_id), api_key="k", max_retries=0)
    )
    stack.fake.script(Reply(tool_calls=[ToolCall("search", BIG_QUERY, id="toolu_big")]))
    sdk.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=50, messages=[{"role": "user", "content": "find it"}]
    )
    result = {"type": "tool_result", "tool_use_id": "toolu_big", "content": "ok " * words}
    stack.fake.script("found")
    sdk.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=50, messages=[{"role": "user", "content": [result]}]
    )
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["assistant", "user"]
    assert [(b["type"], b["id"], b["input"]) for b in sent[0]["content"]] == [
        ("tool_use", "toolu_big", BIG_QUERY)
    ]
    assert sent[1]["content"] == [result]


@pytest.mark.parametrize("words", [3, 200], ids=["small-result", "large-result"])
def test_responses_output_of_a_cut_call_goes_with_its_call(stack: Stack, words: int) -> None:
    context_id = f"orphan-responses-{words}"
    tiny_context(stack, context_id)
    sdk = openai_client(stack, context_id)
    stack.fake.script(Reply(tool_calls=[ToolCall("search", BIG_QUERY, id="call_big")]))
    sdk.responses.create(model=OPENAI_MODEL, input="find it")
    output = {"type": "function_call_output", "call_id": "call_big", "output": "ok " * words}
    stack.fake.script("found")
    sdk.responses.create(model=OPENAI_MODEL, input=[output])
    sent = stack.fake.last.json["input"]
    assert [item["type"] for item in sent] == ["function_call", "function_call_output"]
    assert sent[0]["call_id"] == "call_big"
    assert json.loads(sent[0]["arguments"]) == BIG_QUERY
    assert sent[1]["call_id"] == "call_big"


def imported_history(turns: int) -> list[dict[str, Any]]:
    """A conversation the client had before it used the proxy (~75 tokens a message)."""
    history: list[dict[str, Any]] = []
    for i in range(turns):
        history.append({"role": "user", "content": f"question {i} " + "lorem ipsum dolor " * 20})
        history.append({"role": "assistant", "content": f"answer {i} " + "sit amet elit " * 20})
    return history


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_history_the_log_lacks_is_cut_to_the_budget(stack: Stack, stream: bool) -> None:
    context_id = f"import-{stream}"
    stack.api.put(f"/v1/contexts/{context_id}", json={"token_budget": 500}).raise_for_status()
    sdk = openai_client(stack, context_id)
    history = [*imported_history(40), {"role": "user", "content": "and now?"}]
    raw = sdk.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=history, stream=stream
    )
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        assert raw.parse().choices[0].message.content
    sent = stack.fake.last.json["messages"]
    assert 1 < len(sent) < 20
    assert sent == history[-len(sent) :]  # the newest, in order, the new message last
    log = stack.log(context_id)
    assert len(log) == 82  # every message is stored all the same, and the reply
    # what was sent, by the counts the log holds, is within the budget
    sent_tokens = sum(m["token_count"] for m in log[81 - len(sent) : 81])
    assert sent_tokens <= 500
    assert sent_tokens + 75 > 500 - 20  # ... and not much less: one more would not fit
    if stream:  # a stream's headers describe the context as sent
        assert int(raw.headers["X-Fastpaca-Used-Tokens"]) == sent_tokens
    else:  # a plain call's, the context after the turn was stored
        assert int(raw.headers["X-Fastpaca-Used-Tokens"]) <= 500


def test_imported_trailing_tool_results_keep_their_call(stack: Stack) -> None:
    context_id = "import-tools"
    stack.api.put(f"/v1/contexts/{context_id}", json={"token_budget": 500}).raise_for_status()
    sdk = openai_client(stack, context_id)
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "call_b", "type": "function", "function": {"name": "b", "arguments": "{}"}},
    ]
    turn = [
        {"role": "user", "content": "look both up"},
        {"role": "assistant", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_a", "content": "alpha " * 260},
        {"role": "tool", "tool_call_id": "call_b", "content": "beta " * 260},
    ]
    history = [*imported_history(20), *turn]
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=history)
    sent = stack.fake.last.json["messages"]
    # the results are over the budget with their call: nothing older goes with them
    assert [m["role"] for m in sent] == ["assistant", "tool", "tool"]
    assert sent == history[-3:]
    assert len(stack.log(context_id)) == 45
