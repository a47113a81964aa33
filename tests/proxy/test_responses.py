"""The proxy with the real OpenAI SDK on the Responses API."""

from __future__ import annotations

import openai

from fastpaca_proxy.fake_upstream import Reply, ToolCall

from .support import OPENAI_MODEL, Stack


def client(stack: Stack, context_id: str) -> openai.OpenAI:
    return stack.track(
        openai.OpenAI(base_url=stack.openai_url(context_id), api_key="sk", max_retries=0)
    )


def test_responses_with_function_calls(stack: Stack) -> None:
    sdk = client(stack, "resp-1")
    stack.fake.script(
        Reply(tool_calls=[ToolCall("lookup", {"q": "fastpaca"}, id="call_r1")]),
        Reply(text="Found it."),
    )
    first = sdk.responses.create(
        model=OPENAI_MODEL, instructions="Be exact.", input="find fastpaca"
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["lookup"]
    assert stack.fake.last.json["instructions"] == "Be exact."
    second = sdk.responses.create(
        model=OPENAI_MODEL,
        instructions="Be exact.",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_r1", "output": "a context store"}],
    )
    assert second.output_text == "Found it."
    sent = stack.fake.last.json
    assert "previous_response_id" not in sent  # the history comes from the log
    kinds = [item.get("type", "message") for item in sent["input"]]
    assert kinds == ["message", "function_call", "function_call_output"]
    assert sent["input"][1]["call_id"] == "call_r1"
    log = stack.log("resp-1")
    assert [m["role"] for m in log] == ["user", "assistant", "tool", "assistant"]


def test_responses_stream(stack: Stack) -> None:
    sdk = client(stack, "resp-stream")
    stack.fake.script(Reply(text="one two three"))
    with sdk.responses.stream(model=OPENAI_MODEL, input="count") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "one two three"
    assert final.output_text == "one two three"
    assert stack.texts("resp-stream") == [("user", "count"), ("assistant", "one two three")]
    assert stack.log("resp-stream")[-1]["token_count"] == final.usage.output_tokens  # type: ignore[union-attr]
