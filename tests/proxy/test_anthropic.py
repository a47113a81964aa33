"""The proxy with the real Anthropic SDK on Messages, streamed and not."""

from __future__ import annotations

import anthropic
import pytest

from fastpaca_proxy.fake_upstream import ErrorReply, Reply, ToolCall, Usage

from .support import ANTHROPIC_MODEL, Stack


def client(stack: Stack, context_id: str) -> anthropic.Anthropic:
    return stack.track(
        anthropic.Anthropic(
            base_url=stack.anthropic_url(context_id), api_key="sk-ant-client", max_retries=0
        )
    )


def test_messages_with_system_and_tool_use(stack: Stack) -> None:
    sdk = client(stack, "ant-1")
    stack.fake.script(
        Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"}, id="toolu_1")]),
        Reply(text="It is 12 degrees.", usage=Usage(completion_tokens=9)),
    )
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = sdk.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, system="Be brief.", messages=messages
    )
    assert first.stop_reason == "tool_use"
    sent = stack.fake.last.json
    assert sent["system"] == "Be brief."
    assert sent["messages"] == messages
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 degrees"}],
        },
    ]
    second = sdk.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, system="Be brief.", messages=messages
    )
    assert second.content[0].type == "text"
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][-1]["type"] == "tool_use"
    assert sent[1]["content"][-1]["id"] == "toolu_1"
    assert sent[2]["content"][0]["type"] == "tool_result"
    log = stack.log("ant-1")
    assert [m["role"] for m in log] == ["user", "assistant", "tool", "assistant"]
    assert log[1]["parts"][-1]["type"] == "tool-weather"
    assert log[2]["parts"][0]["toolCallId"] == "toolu_1"
    assert log[3]["token_count"] == 9


def test_stream_helper_and_usage(stack: Stack) -> None:
    sdk = client(stack, "ant-stream")
    stack.fake.script(Reply(text="streamed words here", usage=Usage(completion_tokens=4)))
    with sdk.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=50, messages=[{"role": "user", "content": "go"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streamed words here"
    assert final.usage.output_tokens == 4
    log = stack.log("ant-stream")
    assert [(m["role"], m["token_count"]) for m in log][-1] == ("assistant", 4)
    assert log[-1]["parts"][0]["text"] == "streamed words here"


def test_errors_in_anthropic_shape(stack: Stack) -> None:
    sdk = client(stack, "ant-err")
    stack.fake.script(ErrorReply(529))
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 529
    assert stack.log("ant-err") == []
    # our own errors come in Anthropic's shape too
    stack.api.delete("/v1/contexts/ant-err")
    with pytest.raises(anthropic.APIStatusError) as tomb:
        sdk.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert tomb.value.status_code == 409
    assert tomb.value.body["type"] == "error"  # type: ignore[index]


async def test_async_stream(stack: Stack) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=stack.anthropic_url("ant-async"), api_key="k", max_retries=0
    ) as sdk:
        stack.fake.script(Reply(text="a b c"))
        stream = await sdk.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": "q"}],
            stream=True,
        )
        kinds = [event.type async for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert stack.texts("ant-async") == [("user", "q"), ("assistant", "a b c")]
