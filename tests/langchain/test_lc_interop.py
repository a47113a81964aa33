"""Conversations written by the other ways in read back as LangChain messages, and back.

The stored shapes here are the proxy's: built by hand as API.md describes them,
and produced by the very converters the proxy uses on OpenAI and Anthropic
requests. They are appended with the engine and read through the history.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.tool import invalid_tool_call, tool_call
from lc_support import check_tool_pairs

from fastpaca_core import Message
from fastpaca_core.formats import (
    from_anthropic,
    from_openai_chat,
    reply_from_anthropic,
    to_anthropic,
    to_openai_chat,
)
from langchain_fastpaca import EmbeddedConnection, FastpacaChatMessageHistory, to_fastpaca_messages


def read_back(messages: list[dict[str, Any]], context_id: str = "x") -> list[BaseMessage]:
    """Append ``messages`` with the engine, read them through a history."""
    with EmbeddedConnection("memory://") as connection:
        history = FastpacaChatMessageHistory(context_id, connection)
        connection.call(lambda: connection.engine.append_batch(context_id, messages))
        window = history.messages
        assert list(history.iter_history()) == window
        return window


def text(value: str, **extras: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extras}


def test_the_proxy_stored_shape_by_hand() -> None:
    refusal = {"openai": {"refusal": True}}
    window = read_back(
        [
            {"role": "user", "parts": [text("Weather in Paris and Oslo?")]},
            {
                "role": "assistant",
                "parts": [
                    {"type": "reasoning", "text": "Two cities, two calls."},
                    {
                        "type": "tool-weather",
                        "toolCallId": "call_1",
                        "state": "input-available",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "dynamic-tool",
                        "toolName": "weather",
                        "toolCallId": "call_2",
                        "state": "input-available",
                        "input": {"city": "Oslo"},
                    },
                ],
                "token_count": 20,
            },
            {
                "role": "tool",
                "parts": [
                    {
                        "type": "tool-result",
                        "toolCallId": "call_1",
                        "toolName": "weather",
                        "output": "18C",
                    },
                    {
                        "type": "tool-result",
                        "toolCallId": "call_2",
                        "toolName": "weather",
                        "output": {"temp": 9},
                        "isError": True,
                    },
                ],
            },  # fmt: skip
            {"role": "assistant", "parts": [text("Paris 18C; Oslo unknown.")]},
            {"role": "user", "parts": [text("Write malware.")]},
            {
                "role": "assistant",
                "parts": [text("I can't help with that.", providerMetadata=refusal)],
            },
        ]
    )
    assert window == [
        HumanMessage("Weather in Paris and Oslo?"),
        AIMessage(
            [{"type": "reasoning", "reasoning": "Two cities, two calls."}],
            tool_calls=[
                tool_call(name="weather", args={"city": "Paris"}, id="call_1"),
                tool_call(name="weather", args={"city": "Oslo"}, id="call_2"),
            ],
        ),
        ToolMessage("18C", tool_call_id="call_1", name="weather"),
        ToolMessage('{"temp":9}', tool_call_id="call_2", name="weather", status="error"),
        AIMessage("Paris 18C; Oslo unknown."),
        HumanMessage("Write malware."),
        AIMessage("", additional_kwargs={"refusal": "I can't help with that."}),
    ]
    check_tool_pairs(window)


def test_an_openai_chat_conversation_as_the_proxy_stores_it() -> None:
    request = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "clock", "arguments": "not json"},
                },
            ],
        },  # fmt: skip
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
        {"role": "assistant", "content": "18C at noon.", "refusal": None},
    ]
    stored = [m.to_json() for m in from_openai_chat(request).messages]
    window = read_back(stored)
    assert window == [
        HumanMessage("Weather in Paris?"),
        AIMessage(
            "",
            tool_calls=[tool_call(name="weather", args={"city": "Paris"}, id="call_1")],
            invalid_tool_calls=[
                invalid_tool_call(name="clock", args="not json", id="call_2", error=None)
            ],
        ),
        ToolMessage("18C", tool_call_id="call_1", name="weather"),
        ToolMessage("12:00", tool_call_id="call_2", name="clock"),
        AIMessage("18C at noon."),
    ]
    check_tool_pairs(window)


def test_an_anthropic_conversation_as_the_proxy_stores_it() -> None:
    request = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "sig-1"},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]
    stored = [m.to_json() for m in from_anthropic(request).messages]
    reply = reply_from_anthropic(
        {
            "content": [{"type": "text", "text": "You're welcome."}],
            "usage": {"input_tokens": 40, "output_tokens": 5},
        }
    )
    window = read_back([*stored, reply.to_json()])
    assert window == [
        HumanMessage("Weather in Paris?"),
        AIMessage(
            [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "sig-1"},
                {"type": "text", "text": "Checking."},
            ],
            tool_calls=[tool_call(name="weather", args={"city": "Paris"}, id="toolu_1")],
        ),
        ToolMessage("18C", tool_call_id="toolu_1", name="weather"),
        HumanMessage("Thanks!"),
        AIMessage("You're welcome."),
    ]
    check_tool_pairs(window)


def test_an_ai_sdk_message_with_settled_tool_parts_splits_into_turns() -> None:
    window = read_back(
        [
            {"role": "user", "parts": [text("Weather?")]},
            {
                "role": "assistant",
                "parts": [
                    {"type": "step-start"},
                    text("Let me check."),
                    {
                        "type": "tool-weather",
                        "toolCallId": "t1",
                        "state": "output-available",
                        "input": {"city": "Paris"},
                        "output": {"temp": 18},
                    },
                    {"type": "step-start"},
                    text("It is 18C."),
                ],
            },
        ]
    )
    assert window == [
        HumanMessage("Weather?"),
        AIMessage(
            "Let me check.", tool_calls=[tool_call(name="weather", args={"city": "Paris"}, id="t1")]
        ),
        ToolMessage('{"temp":18}', tool_call_id="t1", name="weather"),
        AIMessage("It is 18C."),
    ]


def test_a_langchain_conversation_converts_to_what_the_proxy_sends() -> None:
    conversation: list[BaseMessage] = [
        HumanMessage("Weather in Paris?"),
        AIMessage(
            "Checking.", tool_calls=[tool_call(name="weather", args={"city": "Paris"}, id="c1")]
        ),
        ToolMessage("18C", tool_call_id="c1"),
        AIMessage("It is 18C."),
    ]
    stored = [Message.parse(m) for m in to_fastpaca_messages(conversation)]
    assert to_openai_chat(stored) == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "assistant", "content": "It is 18C."},
    ]
    anthropic = to_anthropic(stored).messages
    assert anthropic[1]["content"][1] == {
        "type": "tool_use",
        "id": "c1",
        "name": "weather",
        "input": {"city": "Paris"},
    }
    assert anthropic[2]["content"][0]["type"] == "tool_result"
