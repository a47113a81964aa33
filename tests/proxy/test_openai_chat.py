"""The proxy with the real OpenAI SDK on Chat Completions, streamed and not."""

from __future__ import annotations

import json

import openai
import pytest

from fastpaca_proxy.fake_upstream import ErrorReply, Reply, ToolCall, Usage

from .support import OPENAI_MODEL, Stack

SYSTEM = {"role": "system", "content": "You are terse."}


def client(stack: Stack, context_id: str) -> openai.OpenAI:
    return stack.track(
        openai.OpenAI(base_url=stack.openai_url(context_id), api_key="sk-client", max_retries=0)
    )


def test_resent_history_is_stored_once_and_the_model_sees_the_context(stack: Stack) -> None:
    sdk = client(stack, "chat-1")
    history: list[dict[str, object]] = [SYSTEM]
    for turn in range(3):
        stack.fake.script(
            Reply(text=f"answer {turn}", usage=Usage(prompt_tokens=50, completion_tokens=7))
        )
        history.append({"role": "user", "content": f"question {turn}"})
        raw = sdk.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=history)
        completion = raw.parse()
        assert completion.choices[0].message.content == f"answer {turn}"
        assert raw.headers["X-Fastpaca-Context"] == "chat-1"
        assert int(raw.headers["X-Fastpaca-Version"]) == 2 * (turn + 1)
        assert int(raw.headers["X-Fastpaca-Used-Tokens"]) > 0
        sent = stack.fake.last.json["messages"]
        assert sent == [SYSTEM, *history[1:]]  # preamble + stored context + new turn
        history.append({"role": "assistant", "content": f"answer {turn}"})
    assert stack.texts("chat-1") == [
        ("user", "question 0"),
        ("assistant", "answer 0"),
        ("user", "question 1"),
        ("assistant", "answer 1"),
        ("user", "question 2"),
        ("assistant", "answer 2"),
    ]
    replies = [m for m in stack.log("chat-1") if m["role"] == "assistant"]
    assert {m["token_count"] for m in replies} == {7}  # the upstream's own usage figure
    assert stack.fake.last.headers["authorization"] == "Bearer sk-client"


def test_client_sending_only_its_newest_message(stack: Stack) -> None:
    sdk = client(stack, "chat-2")
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}])
    sdk.chat.completions.create(
        model=OPENAI_MODEL, messages=[SYSTEM, {"role": "user", "content": "and then?"}]
    )
    sent = stack.fake.last.json["messages"]
    assert sent == [
        SYSTEM,
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "echo: hi"},
        {"role": "user", "content": "and then?"},
    ]
    assert [role for role, _ in stack.texts("chat-2")] == ["user", "assistant"] * 2


def test_streamed_parallel_tool_calls_round_trip(stack: Stack) -> None:
    sdk = client(stack, "chat-tools")
    stack.fake.script(
        Reply(
            tool_calls=[
                ToolCall("weather", {"city": "Oslo"}, id="call_a"),
                ToolCall("time", {"zone": "CET"}, id="call_b"),
            ]
        ),
        Reply(text="Sunny in Oslo, 12:00."),
    )
    messages: list[dict[str, object]] = [{"role": "user", "content": "weather and time?"}]
    stream = sdk.chat.completions.create(model=OPENAI_MODEL, messages=messages, stream=True)
    calls: dict[int, dict[str, str]] = {}
    chunks = 0
    for chunk in stream:
        chunks += 1
        assert chunk.usage is None or chunk.choices  # the usage chunk stays hidden
        for call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += (call.function.name or "") if call.function else ""
            entry["arguments"] += (call.function.arguments or "") if call.function else ""
    assert chunks > 3
    assert stack.fake.last.json["stream_options"] == {"include_usage": True}
    assert [c["name"] for c in calls.values()] == ["weather", "time"]
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in calls.values()
        ],
    }
    messages += [
        assistant,
        {"role": "tool", "tool_call_id": "call_a", "content": "12 degrees"},
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
    ]
    final = sdk.chat.completions.create(model=OPENAI_MODEL, messages=messages)
    assert final.choices[0].message.content == "Sunny in Oslo, 12:00."
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["call_a", "call_b"]
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
    log = stack.log("chat-tools")
    assert [m["role"] for m in log] == ["user", "assistant", "tool", "tool", "assistant"]
    call_parts = log[1]["parts"]
    assert [p["type"] for p in call_parts] == ["tool-weather", "tool-time"]
    assert call_parts[0]["input"] == {"city": "Oslo"}
    assert log[2]["parts"][0]["type"] == "tool-result"
    assert log[2]["parts"][0]["toolCallId"] == "call_a"


def test_stream_usage_passes_through_when_the_client_asks(stack: Stack) -> None:
    sdk = client(stack, "chat-usage")
    stream = sdk.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usages = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert len(usages) == 1
    stored = stack.log("chat-usage")[-1]
    assert stored["token_count"] == usages[0].completion_tokens


def test_upstream_errors_reach_the_client_unchanged_and_store_nothing(stack: Stack) -> None:
    sdk = client(stack, "chat-err")
    stack.fake.script(ErrorReply(429, message="slow down", retry_after=3))
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "3"
    assert "slow down" in str(info.value)
    assert stack.log("chat-err") == []
    # the retry is clean: stored exactly once
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}])
    assert [role for role, _ in stack.texts("chat-err")] == ["user", "assistant"]


def test_broken_stream_stores_nothing(stack: Stack) -> None:
    sdk = client(stack, "chat-broken")
    stack.fake.script(Reply(text="one two three four five", fail_after=2))
    with pytest.raises(openai.APIConnectionError):
        for _ in sdk.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass
    assert stack.log("chat-broken") == []


async def test_async_client_streams_and_stores(stack: Stack) -> None:
    async with openai.AsyncOpenAI(
        base_url=stack.openai_url("chat-async"), api_key="sk", max_retries=0
    ) as sdk:
        stack.fake.script(Reply(text="alpha beta gamma"))
        stream = await sdk.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "go"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "alpha beta gamma"
    assert stack.texts("chat-async") == [("user", "go"), ("assistant", "alpha beta gamma")]


def test_header_form_and_pass_through(stack: Stack) -> None:
    with openai.OpenAI(
        base_url=f"{stack.base}/v1",
        api_key="sk",
        max_retries=0,
        default_headers={"X-Fastpaca-Context": "by-header"},
    ) as sdk:
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": "a"}])
    assert stack.texts("by-header") == [("user", "a"), ("assistant", "echo: a")]
    with openai.OpenAI(base_url=f"{stack.base}/v1", api_key="sk", max_retries=0) as plain:
        reply = plain.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "untracked"}]
        )
        assert reply.choices[0].message.content == "echo: untracked"
        models = plain.models.list()
        assert models.data
    ids = [c["id"] for c in stack.api.get("/v1/contexts").json()["contexts"]]
    assert ids == ["by-header"]  # the pass-through calls stored nothing
