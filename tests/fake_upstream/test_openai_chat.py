"""The fake's Chat Completions, driven by the real ``openai`` SDK."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import openai
import pytest

from fastpaca_proxy.fake_upstream import (
    ErrorReply,
    FakeUpstream,
    RecordedRequest,
    Reply,
    ToolCall,
    Usage,
)

from .conftest import OPENAI_MODEL

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def test_sync_echo_and_recording(sopenai: openai.OpenAI, fake_thread: FakeUpstream) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]
    completion = sopenai.chat.completions.create(
        model=OPENAI_MODEL, messages=messages, temperature=0.2
    )
    assert completion.object == "chat.completion"
    assert completion.model == OPENAI_MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello there"
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens == math.ceil(len("echo: hello there") / 4)

    [request] = fake_thread.requests
    assert (request.method, request.path, request.protocol) == (
        "POST",
        "/v1/chat/completions",
        "openai_chat",
    )
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json == {"model": OPENAI_MODEL, "messages": messages, "temperature": 0.2}
    assert request.turn is not None and request.turn.text == "echo: hello there"


async def test_async_scripted_text_and_usage(
    aopenai: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(Reply(text="scripted", usage=Usage(prompt_tokens=1000, completion_tokens=7)))
    completion = await aopenai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}]
    )
    assert completion.choices[0].message.content == "scripted"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (1000, 7)
    assert completion.usage.total_tokens == 1007
    assert fake.pending == 0


async def test_prompt_tokens_are_configurable(
    aopenai: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    # "report prompt tokens 15% above what the proxy thinks it sent"
    def inflated(request: RecordedRequest) -> int:
        sent = sum(len(m["content"]) for m in request.json["messages"])
        return math.ceil(sent * 1.15)

    fake.prompt_tokens = inflated
    completion = await aopenai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "a" * 100}]
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 115


async def test_parallel_tool_calls(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(
        Reply(
            tool_calls=[
                ToolCall("get_weather", {"city": "Oslo"}, id="call_1"),
                ToolCall("get_weather", '{"city":"Bergen"}'),
            ]
        )
    )
    completion = await aopenai.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "weather?"}],
        tools=TOOLS,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 2
    assert calls[0].id == "call_1"
    assert calls[1].id.startswith("call_")
    assert [c.type for c in calls] == ["function", "function"]
    functions = [c.function for c in calls if c.type == "function"]
    assert [json.loads(f.arguments) for f in functions] == [{"city": "Oslo"}, {"city": "Bergen"}]
    assert fake.last.json["tools"] == TOOLS


async def test_stream_text_with_usage(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="one two three four"))
    stream = await aopenai.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    contents = [c.choices[0].delta.content for c in chunks if c.choices]
    assert contents[1:5] == ["one", " two", " three", " four"]
    *body, last = chunks
    assert body[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in body)
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == math.ceil(len("one two three four") / 4)
    assert fake.last.stream and fake.last.json["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_sends_no_usage_chunk(
    aopenai: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    stream = await aopenai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_sync_stream_tool_call_pieces(sopenai: openai.OpenAI, fake_thread: FakeUpstream) -> None:
    args = {"city": "Oslo", "unit": "celsius", "days": 3}
    fake_thread.script(
        Reply(tool_calls=[ToolCall("get_weather", args), ToolCall("get_time", {"tz": "CET"})])
    )
    stream = sopenai.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "weather?"}],
        tools=TOOLS,
        stream=True,
    )
    pieces: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or []:
            assert call.function is not None
            if call.id is not None:
                assert call.type == "function" and call.function.name
                names[call.index] = call.function.name
            pieces.setdefault(call.index, []).append(call.function.arguments or "")
    assert names == {0: "get_weather", 1: "get_time"}
    assert len([p for p in pieces[0] if p]) > 1, "arguments should arrive in several pieces"
    assert json.loads("".join(pieces[0])) == args
    assert json.loads("".join(pieces[1])) == {"tz": "CET"}
    assert finish == "tool_calls"


def test_sync_stream_helper_final_completion(sopenai: openai.OpenAI) -> None:
    with sopenai.chat.completions.stream(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "stream me"}]
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == "echo: stream me"
    assert final.choices[0].message.content == "echo: stream me"
    assert final.choices[0].finish_reason == "stop"


async def test_async_stream_helper_tool_calls(
    aopenai: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.script(Reply(text="checking", tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]))
    async with aopenai.chat.completions.stream(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "weather?"}],
        tools=TOOLS,
    ) as stream:
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "checking"
    assert message.tool_calls is not None
    [call] = message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}


async def test_refusal(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(refusal="I can't help with that."), Reply(refusal="No."))
    completion = await aopenai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "bad"}]
    )
    message = completion.choices[0].message
    assert (message.content, message.refusal) == (None, "I can't help with that.")
    async with aopenai.chat.completions.stream(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "bad"}]
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.refusal == "No."


async def test_finish_reason_length(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="cut", finish_reason="length"))
    completion = await aopenai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "long"}], max_tokens=1
    )
    assert completion.choices[0].finish_reason == "length"


async def test_pacing(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="x" * 256, chunks=64, delay=0.002))
    started = time.perf_counter()
    stream = await aopenai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "go"}], stream=True
    )
    contents = [c.choices[0].delta.content async for c in stream if c.choices]
    elapsed = time.perf_counter() - started
    assert [c for c in contents if c] == ["xxxx"] * 64
    assert elapsed >= 64 * 0.002


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
async def test_scripted_errors(
    aopenai: openai.AsyncOpenAI,
    fake: FakeUpstream,
    status: int,
    error_class: type[openai.APIStatusError],
    error_type: str,
) -> None:
    fake.script(ErrorReply(status, retry_after=3 if status == 429 else None))
    with pytest.raises(error_class) as caught:
        await aopenai.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}]
        )
    err = caught.value
    assert err.status_code == status
    assert err.type == error_type
    body = err.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    if status == 429:
        assert err.response.headers["retry-after"] == "3"
        assert err.code == "rate_limit_exceeded"
    assert fake.last.status == status


async def test_validation_and_auth() -> None:
    async with FakeUpstream(api_key="sk-right") as fake:
        async with openai.AsyncOpenAI(
            base_url=fake.openai_base_url, api_key="sk-wrong-key", max_retries=0
        ) as wrong:
            with pytest.raises(openai.AuthenticationError) as auth:
                await wrong.chat.completions.create(
                    model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}]
                )
            assert auth.value.code == "invalid_api_key"
        async with openai.AsyncOpenAI(
            base_url=fake.openai_base_url, api_key="sk-right", max_retries=0
        ) as right:
            with pytest.raises(openai.BadRequestError) as bad:
                await right.chat.completions.create(model=OPENAI_MODEL, messages=[])
            assert bad.value.code == "empty_array"
            assert bad.value.param == "messages"
            ok = await right.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}]
            )
            assert ok.choices[0].message.content == "echo: x"
        assert [r.status for r in fake.requests] == [401, 400, 200]


async def test_mid_stream_drop(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a b c d e f", fail_after=2))
    stream = await aopenai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "a b"


async def test_mid_stream_error_event(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a b c d", fail_after=1, fail_with=ErrorReply(500)))
    stream = await aopenai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert caught.value.type == "server_error"


async def test_non_streaming_drop(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(fail_after=0))
    with pytest.raises(openai.APIConnectionError):
        await aopenai.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}]
        )
