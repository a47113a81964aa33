"""LangChain <-> stored messages: exact round trips, and the shape others can read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    RemoveMessage,
    ToolMessage,
)
from lc_strategies import messages

from fastpaca_core import Message
from fastpaca_core.toolcalls import tool_refs
from langchain_fastpaca import (
    EmbeddedConnection,
    FastpacaChatMessageHistory,
    from_fastpaca,
    from_fastpaca_messages,
    to_fastpaca,
    to_fastpaca_messages,
)


def stored(value: dict[str, Any]) -> dict[str, Any]:
    """What a store gives back: the JSON of the message."""
    parsed = Message.parse(value)  # the engine accepts it
    out: dict[str, Any] = orjson.loads(orjson.dumps(parsed.to_json()))
    return out


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_round_trip_is_exact(message: BaseMessage) -> None:
    assert from_fastpaca(stored(to_fastpaca(message))) == [message]


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, max_size=6))
def test_batches_round_trip_and_calls_pair_with_results(batch: list[BaseMessage]) -> None:
    out = [stored(m) for m in to_fastpaca_messages(batch)]
    assert from_fastpaca_messages(out) == batch
    for message, value in zip(batch, out, strict=True):
        calls, results = tool_refs(Message.parse(value))
        if isinstance(message, AIMessage):
            ids = [c["id"] for c in [*message.tool_calls, *message.invalid_tool_calls]]
            named = {i for i in ids if i is not None}
            assert named <= calls  # every call is a part the window pairs with its results
            assert len(calls) == len(named) + ids.count(None)  # an id-less call gets its own
        if isinstance(message, ToolMessage):
            assert results == {message.tool_call_id}


def test_the_stored_shape() -> None:
    reply = AIMessage(
        content="Looking.",
        id="run-1",
        tool_calls=[{"name": "search", "args": {"q": "fastpaca"}, "id": "call-1"}],
        usage_metadata={"input_tokens": 30, "output_tokens": 9, "total_tokens": 39},
    )
    result = ToolMessage("found", tool_call_id="call-1", status="error", artifact={"hits": 0})
    assert to_fastpaca_messages([reply, result]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "text": "Looking."},
                {
                    "type": "tool-search",
                    "toolCallId": "call-1",
                    "state": "input-available",
                    "input": {"q": "fastpaca"},
                },
            ],
            "metadata": {
                "langchain": {
                    "type": "ai",
                    "fields": {
                        "id": "run-1",
                        "usage_metadata": {
                            "input_tokens": 30,
                            "output_tokens": 9,
                            "total_tokens": 39,
                        },
                    },
                }
            },
            "token_count": 9,
        },
        {
            "role": "tool",
            "parts": [
                {
                    "type": "tool-result",
                    "toolCallId": "call-1",
                    "toolName": "search",  # from the call earlier in the batch
                    "output": "found",
                    "isError": True,
                }
            ],
            "metadata": {"langchain": {"type": "tool", "fields": {"artifact": {"hits": 0}}}},
        },
    ]


def test_content_blocks_become_parts_others_read() -> None:
    message = HumanMessage(
        [
            "plain",
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,QQ==", "detail": "low"},
            },
            {"type": "image", "url": "https://example.com/cat.jpg", "mime_type": "image/jpeg"},
            {"type": "mystery", "x": 1},
        ]
    )
    parts = to_fastpaca(message)["parts"]
    assert [p["type"] for p in parts] == ["text", "file", "file", "data-langchain"]
    assert parts[1]["mediaType"] == "image/png" and parts[1]["url"].startswith("data:image/png")
    assert parts[1]["providerMetadata"]["openai"] == {"detail": "low"}
    assert parts[2] | {"providerMetadata": None} == {
        "type": "file",
        "mediaType": "image/jpeg",
        "url": "https://example.com/cat.jpg",
        "providerMetadata": None,
    }


def test_thinking_is_stored_as_the_anthropic_proxy_stores_it() -> None:
    message = AIMessage([{"type": "thinking", "thinking": "hmm", "signature": "sig"}, "ok"])
    assert to_fastpaca(message)["parts"][0] == {
        "type": "reasoning",
        "text": "hmm",
        "providerMetadata": {"anthropic": {"signature": "sig"}},
    }


def test_chunks_are_stored_as_the_message_they_complete() -> None:
    chunk = AIMessageChunk(
        content="Hel",
        id="run-2",
        tool_call_chunks=[{"name": "f", "args": '{"a": 1}', "id": "c1", "index": 0}],
    ) + AIMessageChunk(content="lo")
    (back,) = from_fastpaca(stored(to_fastpaca(chunk)))
    assert type(back) is AIMessage
    assert back.content == "Hello" and back.id == "run-2"
    assert back.tool_calls == [{"name": "f", "args": {"a": 1}, "id": "c1", "type": "tool_call"}]


def test_unknown_message_types_and_non_json_values_are_refused() -> None:
    with pytest.raises(TypeError, match="RemoveMessage"):
        to_fastpaca(RemoveMessage(id="x"))
    with pytest.raises(TypeError, match="JSON"):
        to_fastpaca(ToolMessage("x", tool_call_id="c", artifact=object()))
    with pytest.raises(TypeError, match="JSON"):  # bytes that are not UTF-8 text
        to_fastpaca(AIMessage("x", additional_kwargs={"audio": b"\x00\xff"}))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=4))
def test_round_trip_through_the_engine(batch: list[BaseMessage]) -> None:
    with EmbeddedConnection("memory://") as connection:
        history = FastpacaChatMessageHistory("lc-props", connection, token_budget=10**9)
        history.add_messages(batch)
        assert list(history.iter_history()) == batch
