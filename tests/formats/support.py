"""Checks shared by the format tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from anthropic.types import MessageParam
from hypothesis import HealthCheck, settings
from openai.types.chat import ChatCompletionMessageParam
from pydantic import TypeAdapter

from fastpaca_core.formats._parts import tool_call
from fastpaca_core.jsonutil import dumps, loads
from fastpaca_core.model import Message
from fastpaca_core.toolcalls import is_call_part

# generation dominates the cost: enough examples to find the odd case, fast enough for CI
ROUND_TRIPS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CROSS = settings(ROUND_TRIPS, max_examples=25)

CHAT_PARAMS = TypeAdapter(list[ChatCompletionMessageParam])
ANTHROPIC_PARAMS = TypeAdapter(list[MessageParam])

# parts that mean "could not read this": never expected from a well-formed request
FALLBACKS = frozenset(
    {
        "data-openai-chat-message",
        "data-openai-chat-part",
        "data-openai-chat-call",
        "data-openai-content",
        "data-anthropic-message",
    }
)
UNKNOWN_ITEMS = frozenset({"web_search_call", "item_reference"})
UNKNOWN_BLOCKS = frozenset({"search_result", "server_tool_use", "web_search_tool_result"})


def force(value: Any) -> Any:
    """Run pydantic's lazy validators of ``Iterable`` fields to the end."""
    if isinstance(value, dict):
        return {k: force(v) for k, v in value.items()}
    if isinstance(value, list | tuple | Iterator):
        return [force(v) for v in value]
    return value


def valid_chat(messages: list[dict[str, Any]]) -> None:
    force(CHAT_PARAMS.validate_python(messages))


def valid_anthropic(messages: list[dict[str, Any]]) -> None:
    force(ANTHROPIC_PARAMS.validate_python(messages))


def check_stored(messages: list[Message]) -> None:
    """Every message is storable as is and has the documented shape."""
    for message in messages:
        again = Message.parse(loads(dumps(message.to_json())))
        assert again == message
        assert message.token_count is None
        for part in message.parts:
            kind = part["type"]
            assert kind not in FALLBACKS, part
            if kind == "data-openai-item":
                assert part["data"]["type"] in UNKNOWN_ITEMS, part
            if kind == "data-anthropic-block":
                assert part["data"]["type"] in UNKNOWN_BLOCKS, part
            if is_call_part(part):
                assert message.role == "assistant"
                assert part["state"] == "input-available"
                assert {"toolCallId", "input"} <= part.keys()
                assert "providerMetadata" not in part
        if message.role == "tool":
            assert message.parts and all(p["type"] == "tool-result" for p in message.parts)


def strip(value: Any) -> Any:
    """Parts without their provider extras."""
    if isinstance(value, list):
        return [strip(v) for v in value]
    if isinstance(value, dict) and "type" in value:
        return {k: v for k, v in value.items() if k not in ("providerMetadata",)}
    return value


def events(messages: list[Message]) -> list[tuple[Any, ...]]:
    """What must survive any conversion: texts, files, calls and results, in order."""
    out: list[tuple[Any, ...]] = []
    for message in messages:
        for part in message.parts:
            kind = part["type"]
            if kind == "text" and part["text"]:
                out.append((message.role, "text", part["text"]))
            elif kind == "file":
                out.append((message.role, "file", part["url"], part.get("filename")))
            elif kind == "tool-result":
                result = (part["toolCallId"], part["toolName"], strip(part["output"]))
                out.append(("result", *result))
            elif (call := tool_call(part)) is not None:
                out.append(("call", call.call_id, call.name, call.input))
    return out
