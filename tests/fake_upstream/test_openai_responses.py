"""The fake's Responses API, driven by the real ``openai`` SDK."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from fastpaca_proxy.fake_upstream import ErrorReply, FakeUpstream, Reply, ToolCall, Usage

from .conftest import OPENAI_MODEL

TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


def test_sync_plain(sopenai: openai.OpenAI, fake_thread: FakeUpstream) -> None:
    response = sopenai.responses.create(
        model=OPENAI_MODEL, input="hello", instructions="be brief", max_output_tokens=50
    )
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "echo: hello"
    assert response.instructions == "be brief"
    assert response.max_output_tokens == 50
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert response.usage is not None
    assert response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens
    )
    request = fake_thread.last
    assert (request.path, request.protocol) == ("/v1/responses", "openai_responses")
    assert request.json == {
        "model": OPENAI_MODEL,
        "input": "hello",
        "instructions": "be brief",
        "max_output_tokens": 50,
    }
    assert request.messages == [{"role": "user", "content": "hello"}]


async def test_input_items_echo_and_usage(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(usage=Usage(prompt_tokens=500, cached_tokens=200, reasoning_tokens=3)))
    items: list[Any] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
    ]
    response = await aopenai.responses.create(model=OPENAI_MODEL, input=items)
    assert response.output_text == "echo: second"
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens == 500
    assert usage.input_tokens_details.cached_tokens == 200
    assert usage.output_tokens_details.reasoning_tokens == 3
    assert fake.last.messages == items


async def test_stream_event_sequence(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="hi there"))
    stream = await aopenai.responses.create(model=OPENAI_MODEL, input="x", stream=True)
    events = [event async for event in stream]
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    created, completed = events[0], events[-1]
    assert created.type == "response.created" and completed.type == "response.completed"
    assert created.response.status == "in_progress"
    assert created.response.usage is None
    assert completed.response.id == created.response.id
    assert completed.response.output_text == "hi there"
    assert completed.response.usage is not None
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["hi", " there"]


def test_sync_stream_helper(sopenai: openai.OpenAI) -> None:
    with sopenai.responses.stream(model=OPENAI_MODEL, input="stream me") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: stream me"
    assert final.output_text == "echo: stream me"


async def test_function_calls(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    calls = [ToolCall("get_weather", {"city": "Oslo"}), ToolCall("get_weather", {"city": "Rome"})]
    fake.script(Reply(tool_calls=calls), Reply(tool_calls=calls))
    response = await aopenai.responses.create(model=OPENAI_MODEL, input="weather?", tools=TOOLS)
    assert [item.type for item in response.output] == ["function_call", "function_call"]
    first = response.output[0]
    assert first.type == "function_call"
    assert first.name == "get_weather" and json.loads(first.arguments) == {"city": "Oslo"}
    assert first.call_id.startswith("call_") and first.id is not None
    assert response.tools[0].type == "function"

    async with aopenai.responses.stream(
        model=OPENAI_MODEL, input="weather?", tools=TOOLS
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    arg_deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(arg_deltas) >= 4  # several pieces per call
    dones = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [json.loads(e.arguments) for e in dones] == [{"city": "Oslo"}, {"city": "Rome"}]
    outputs = [item for item in final.output if item.type == "function_call"]
    assert [json.loads(item.arguments) for item in outputs] == [{"city": "Oslo"}, {"city": "Rome"}]


async def test_function_call_output_round_trip(
    aopenai: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    items: list[Any] = [
        {"role": "user", "content": "weather?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Oslo"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    response = await aopenai.responses.create(model=OPENAI_MODEL, input=items, tools=TOOLS)
    assert response.output_text == "echo: sunny"
    assert fake.last.json["input"] == items


async def test_reasoning_item(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(reasoning="think first", text="answer"))
    stream = await aopenai.responses.create(
        model=OPENAI_MODEL, input="q", reasoning={"effort": "low"}, stream=True
    )
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds.index("response.reasoning_summary_text.delta") < kinds.index(
        "response.output_text.delta"
    )
    final = events[-1]
    assert final.type == "response.completed"
    assert [item.type for item in final.response.output] == ["reasoning", "message"]
    reasoning = final.response.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "think first"
    assert final.response.reasoning is not None
    assert final.response.reasoning.effort == "low"


async def test_refusal_and_incomplete(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(refusal="I can't."), Reply(text="cut", finish_reason="length"))
    refused = await aopenai.responses.create(model=OPENAI_MODEL, input="bad")
    message = refused.output[0]
    assert message.type == "message"
    assert message.content[0].type == "refusal"
    stream = await aopenai.responses.create(model=OPENAI_MODEL, input="long", stream=True)
    events = [event async for event in stream]
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


async def test_errors(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(ErrorReply(429, retry_after=1.5), protocol="openai_responses")
    with pytest.raises(openai.RateLimitError) as caught:
        await aopenai.responses.create(model=OPENAI_MODEL, input="x")
    assert caught.value.response.headers["retry-after"] == "1.5"
    with pytest.raises(openai.BadRequestError):
        await aopenai.responses.create(model="", input="x")


async def test_mid_stream_error_event(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a b c", fail_after=1, fail_with=ErrorReply(500)))
    stream = await aopenai.responses.create(model=OPENAI_MODEL, input="x", stream=True)
    events = [event async for event in stream]
    last = events[-1]
    assert last.type == "error"
    assert last.code == "server_error"
    assert last.sequence_number == len(events) - 1
    assert [e.type for e in events].count("response.output_text.delta") == 1


async def test_mid_stream_drop(aopenai: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.script(Reply(text="a b c", fail_after=1))
    stream = await aopenai.responses.create(model=OPENAI_MODEL, input="x", stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass


def test_models(sopenai: openai.OpenAI, fake_thread: FakeUpstream) -> None:
    models = list(sopenai.models.list())
    assert [m.id for m in models] == fake_thread.models
    assert all(m.object == "model" for m in models)
    model = sopenai.models.retrieve(OPENAI_MODEL)
    assert model.id == OPENAI_MODEL
    with pytest.raises(openai.NotFoundError) as caught:
        sopenai.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
