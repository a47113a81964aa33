"""The fake's Messages API, driven by the real ``anthropic`` SDK."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import httpx
import pytest

from fastpaca_proxy.fake_upstream import ErrorReply, FakeUpstream, Reply, ToolCall, Usage

from .conftest import ANTHROPIC_MODEL

TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def test_sync_plain(santhropic: anthropic.Anthropic, fake_thread: FakeUpstream) -> None:
    message = santhropic.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == ANTHROPIC_MODEL
    assert message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text" and block.text == "echo: hello"
    assert message.usage.output_tokens == 3
    request = fake_thread.last
    assert (request.path, request.protocol) == ("/v1/messages", "anthropic")
    # anthropic 2.x sends the key as a bearer token; older SDKs and ai-sdk use x-api-key
    key = request.headers.get("x-api-key") or request.headers["authorization"].removeprefix(
        "Bearer "
    )
    assert key == "sk-ant-test"
    assert "anthropic-version" in request.headers
    assert request.json == {
        "model": ANTHROPIC_MODEL,
        "max_tokens": 100,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hello"}],
    }


async def test_tool_use_and_cache_usage(
    aanthropic: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    fake.script(
        Reply(
            text="Let me check.",
            tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="toolu_1")],
            usage=Usage(prompt_tokens=1000, cached_tokens=600, cache_creation_tokens=100),
        )
    )
    message = await aanthropic.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=100,
        tools=TOOLS,
        messages=[{"role": "user", "content": "weather?"}],
    )
    assert message.stop_reason == "tool_use"
    text, tool = message.content
    assert text.type == "text" and text.text == "Let me check."
    assert tool.type == "tool_use"
    assert (tool.id, tool.name, tool.input) == ("toolu_1", "get_weather", {"city": "Oslo"})
    usage = message.usage
    assert usage.input_tokens == 300
    assert usage.cache_read_input_tokens == 600
    assert usage.cache_creation_input_tokens == 100
    assert fake.last.json["tools"] == TOOLS


async def test_tool_result_echo(aanthropic: anthropic.AsyncAnthropic, fake: FakeUpstream) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
        },
    ]
    message = await aanthropic.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, tools=TOOLS, messages=messages
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: sunny"
    assert fake.last.messages == messages


async def test_raw_stream_events(aanthropic: anthropic.AsyncAnthropic, fake: FakeUpstream) -> None:
    fake.script(Reply(text="hi there", tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]))
    stream = await aanthropic.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=100,
        tools=TOOLS,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
    )
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2
    start = events[0]
    assert start.type == "message_start"
    assert start.message.content == [] and start.message.stop_reason is None
    assert start.message.usage.input_tokens > 0
    deltas = [e for e in events if e.type == "content_block_delta"]
    text = "".join(d.delta.text for d in deltas if d.delta.type == "text_delta")
    json_parts = [d.delta.partial_json for d in deltas if d.delta.type == "input_json_delta"]
    assert text == "hi there"
    assert len(json_parts) >= 3 and json_parts[0] == ""
    assert "".join(json_parts) == '{"city":"Oslo"}'
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "tool_use"
    assert delta.usage.output_tokens > 0


async def test_ping_on_the_wire(fake: FakeUpstream) -> None:
    body = {
        "model": ANTHROPIC_MODEL,
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "k"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.base_url}/v1/messages", json=body, headers=headers) as resp,
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = await resp.text()
    blocks = [b for b in raw.split("\n\n") if b]
    names = [b.splitlines()[0] for b in blocks]
    assert names[:3] == ["event: message_start", "event: content_block_start", "event: ping"]
    assert all(b.splitlines()[1].startswith("data: {") for b in blocks)


def test_sync_stream_helper(santhropic: anthropic.Anthropic, fake_thread: FakeUpstream) -> None:
    fake_thread.script(
        Reply(
            reasoning="let me think",
            text="Oslo it is.",
            tool_calls=[ToolCall("get_weather", {"city": "Oslo"})],
        )
    )
    with santhropic.messages.stream(
        model=ANTHROPIC_MODEL,
        max_tokens=100,
        tools=TOOLS,
        messages=[{"role": "user", "content": "weather?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Oslo it is."
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    thinking, _, tool = final.content
    assert thinking.type == "thinking" and thinking.thinking == "let me think"
    assert thinking.signature
    assert tool.type == "tool_use" and tool.input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens > 1


async def test_async_stream_helper(aanthropic: anthropic.AsyncAnthropic) -> None:
    async with aanthropic.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=[{"role": "user", "content": "yo"}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "echo: yo"


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_scripted_errors(
    aanthropic: anthropic.AsyncAnthropic,
    fake: FakeUpstream,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    fake.script(ErrorReply(status, retry_after=7 if status == 429 else None))
    with pytest.raises(error_class) as caught:
        await aanthropic.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    err = caught.value
    assert err.status_code == status
    body = err.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str)
    assert err.response.headers["request-id"] == body["request_id"]
    if status == 429:
        assert err.response.headers["retry-after"] == "7"


async def test_auth_version_and_validation(fake: FakeUpstream) -> None:
    fake.api_key = "sk-ant-right"
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="sk-ant-wrong", max_retries=0
    ) as wrong:
        with pytest.raises(anthropic.AuthenticationError):
            await wrong.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )
    url = f"{fake.base_url}/v1/messages"
    body: dict[str, Any] = {"model": ANTHROPIC_MODEL, "messages": []}
    async with httpx.AsyncClient() as client:
        no_version = await client.post(url, json=body, headers={"x-api-key": "sk-ant-right"})
        no_max_tokens = await client.post(
            url,
            json=body,
            headers={"x-api-key": "sk-ant-right", "anthropic-version": "2023-06-01"},
        )
    assert no_version.status_code == 400
    assert "anthropic-version" in no_version.json()["error"]["message"]
    assert no_max_tokens.status_code == 400
    assert no_max_tokens.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }


async def test_mid_stream_error_event(
    aanthropic: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    fake.script(Reply(text="a b c d", fail_after=2, fail_with=ErrorReply(529)))
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with aanthropic.messages.stream(
            model=ANTHROPIC_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            async for text in stream.text_stream:
                received.append(text)
    assert "".join(received) == "a b"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"


async def test_mid_stream_drop(aanthropic: anthropic.AsyncAnthropic, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a b c d", fail_after=2))
    # the SDK lets the transport error through as it is mid-stream
    with pytest.raises((anthropic.APIConnectionError, httpx.HTTPError, Exception)) as caught:
        async with aanthropic.messages.stream(
            model=ANTHROPIC_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            async for _ in stream:
                pass
    assert "incomplete" in str(caught.value) or "closed" in str(caught.value).lower()


async def test_models_and_count_tokens(
    aanthropic: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    page = await aanthropic.models.list()
    assert [m.id for m in page.data] == fake.models
    assert all(m.type == "model" for m in page.data)
    model = await aanthropic.models.retrieve(ANTHROPIC_MODEL)
    assert model.id == ANTHROPIC_MODEL
    with pytest.raises(anthropic.NotFoundError):
        await aanthropic.models.retrieve("claude-nope")
    fake.prompt_tokens = lambda request: 42
    counted = await aanthropic.messages.count_tokens(
        model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "x"}]
    )
    assert counted.input_tokens == 42
