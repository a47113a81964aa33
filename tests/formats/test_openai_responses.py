"""OpenAI Responses input items <-> our messages: exact round trips, merging, replies."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from openai.types.responses import Response

from fastpaca_core.formats import (
    from_responses_input,
    reply_from_response,
    to_anthropic,
    to_openai_chat,
    to_responses_input,
)
from fastpaca_core.model import Message

from .strategies import responses_histories
from .support import ROUND_TRIPS, check_stored


def _preamble(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and item.get("role") in ("system", "developer")


@ROUND_TRIPS
@given(responses_histories())
def test_round_trip_is_exact(items: list[dict[str, Any]]) -> None:
    split = from_responses_input(items)
    assert split.preamble == [i for i in items if _preamble(i)]
    check_stored(split.messages)
    assert to_responses_input(split.messages) == [i for i in items if not _preamble(i)]


def test_string_input_is_one_user_message() -> None:
    split = from_responses_input("Hello!")
    assert split.preamble == []
    assert split.messages == [Message("user", [{"type": "text", "text": "Hello!"}])]
    assert to_responses_input(split.messages) == [{"role": "user", "content": "Hello!"}]


def test_a_model_turn_is_one_assistant_message() -> None:
    items: list[dict[str, Any]] = [
        {"role": "user", "content": "weather in Oslo and Paris?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
        {"role": "assistant", "content": "Checking."},
        {"role": "assistant", "content": "Both cities."},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "weather",
            "arguments": '{"city":"Oslo"}',
        },
        {
            "type": "function_call",
            "call_id": "c2",
            "name": "weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "c2", "output": "rain"},
        {"type": "function_call_output", "call_id": "c1", "output": "sun"},
    ]
    split = from_responses_input(items)
    user, turn, out2, out1 = split.messages
    assert [p["type"] for p in turn.parts] == [
        "reasoning",
        "text",
        "text",
        "tool-weather",
        "tool-weather",
    ]
    assert turn.parts[0]["providerMetadata"] == {
        "openai": {"itemId": "rs_1", "summary": [], "encryptedContent": "gAAAA"}
    }
    # each message item's first part marks where the item starts
    assert turn.parts[1]["providerMetadata"] == {"openai": {"item": {}}}
    assert [m.role for m in (out2, out1)] == ["tool", "tool"]
    assert out2.parts == [
        {"type": "tool-result", "toolCallId": "c2", "toolName": "weather", "output": "rain"}
    ]
    assert to_responses_input(split.messages) == items
    # other providers: the encrypted reasoning cannot be replayed there
    assert "reasoning_content" not in to_openai_chat(split.messages)[1]
    assert [b["type"] for b in to_anthropic(split.messages).messages[1]["content"]] == [
        "text",
        "text",
        "tool_use",
        "tool_use",
    ]


def test_unknown_and_unreadable_items_are_kept_verbatim() -> None:
    items: list[dict[str, Any]] = [
        {"type": "item_reference", "id": "msg_123"},
        {"type": "function_call", "name": "no_call_id", "arguments": "{}"},
        {"role": "user", "content": [{"type": "input_video", "url": "x"}]},
        {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "s", "tools": []},
    ]
    split = from_responses_input(items)
    assert [[p["type"] for p in m.parts] for m in split.messages] == [
        ["data-openai-item", "data-openai-item"],
        ["data-openai-content"],
        ["data-openai-item"],
    ]
    assert to_responses_input(split.messages) == items
    assert to_openai_chat(split.messages) == []


def test_ai_sdk_style_reasoning_parts_merge_into_one_item() -> None:
    def part(text: str) -> dict[str, Any]:
        extras = {"itemId": "rs_9", "reasoningEncryptedContent": "enc"}
        return {"type": "reasoning", "text": text, "providerMetadata": {"openai": extras}}

    message = Message("assistant", [part("first"), part("second"), {"type": "text", "text": "hi"}])
    assert to_responses_input([message]) == [
        {
            "type": "reasoning",
            "id": "rs_9",
            "summary": [
                {"type": "summary_text", "text": "first"},
                {"type": "summary_text", "text": "second"},
            ],
            "encrypted_content": "enc",
        },
        {"role": "assistant", "content": "hi"},
    ]


def test_custom_tool_outputs_follow_their_calls() -> None:
    messages = [
        Message(
            "assistant",
            [
                {
                    "type": "tool-shell",
                    "toolCallId": "k",
                    "state": "input-available",
                    "input": "ls",
                    "callProviderMetadata": {"openai": {"custom": True}},
                }
            ],
        ),
        Message(
            "tool", [{"type": "tool-result", "toolCallId": "k", "toolName": "shell", "output": "a"}]
        ),
    ]
    assert to_responses_input(messages) == [
        {"type": "custom_tool_call", "input": "ls", "call_id": "k", "name": "shell"},
        {"type": "custom_tool_call_output", "call_id": "k", "output": "a"},
    ]


OUTPUT: list[dict[str, Any]] = [
    {
        "id": "rs_68af",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "**Checking weather**"}],
        "encrypted_content": "gAAAAABor",
        "status": None,
    },
    {
        "id": "msg_68af",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [
            {
                "type": "output_text",
                "text": "Let me look that up.",
                "annotations": [
                    {
                        "type": "url_citation",
                        "start_index": 0,
                        "end_index": 3,
                        "title": "Weather",
                        "url": "https://example.test/weather",
                    }
                ],
                "logprobs": [],
            }
        ],
    },
    {
        "id": "fc_68af",
        "type": "function_call",
        "status": "completed",
        "arguments": '{"city": "Oslo"}',
        "call_id": "call_Q2l",
        "name": "get_weather",
    },
    {
        "id": "ws_68af",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "weather Oslo"},
    },
]


def _response(output: list[dict[str, Any]]) -> dict[str, Any]:
    body = {
        "id": "resp_68af",
        "object": "response",
        "created_at": 1756299000,
        "status": "completed",
        "model": "gpt-5-2025-08-07",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 81,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 135,
            "output_tokens_details": {"reasoning_tokens": 64},
            "total_tokens": 216,
        },
    }
    Response.model_validate(body)
    return body


def _no_nulls(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


def test_reply_is_one_assistant_message_and_converts_back() -> None:
    body = _response(OUTPUT)
    dumped = Response.model_validate(body).model_dump(exclude_unset=True)
    for reply in (reply_from_response(body), reply_from_response(dumped)):
        assert reply.role == "assistant" and reply.token_count == 135
        assert [p["type"] for p in reply.parts] == [
            "reasoning",
            "text",
            "tool-get_weather",
            "data-openai-item",
        ]
        assert reply.parts[0]["text"] == "**Checking weather**"
        assert reply.parts[2]["input"] == {"city": "Oslo"}
        assert to_responses_input([reply]) == [_no_nulls(i) for i in OUTPUT]
    # continued in Chat Completions: text and the call, nothing provider-only
    assert to_openai_chat([reply_from_response(body)]) == [
        {
            "role": "assistant",
            "content": "Let me look that up.",
            "tool_calls": [
                {
                    "id": "call_Q2l",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        }
    ]


def test_reply_without_output_or_usage() -> None:
    assert reply_from_response({"output": []}) == Message("assistant", [], {}, None)


def test_less_common_shapes_round_trip() -> None:
    items: list[dict[str, Any]] = [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_file", "file_data": "JVBERi0=", "filename": "a.pdf"},
                {"type": "input_file", "file_data": "data:image/png;base64,iVBO"},
                {
                    "type": "input_text",
                    "text": "see",
                    "prompt_cache_breakpoint": {"mode": "explicit"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "input_text", "text": "a"}],
            "phase": "commentary",
        },
        {"role": "assistant", "content": "b"},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "c"}],
        },
        {
            "type": "function_call_output",
            "call_id": "x",
            "output": "late",
            "name": "tool",
            "id": "fco_1",
        },
    ]
    split = from_responses_input(items)
    check_stored(split.messages)
    assert split.messages[1].parts[2]["text"] == "c"  # reasoning text from its content
    assert split.messages[2].parts[0]["toolName"] == "tool"
    assert to_responses_input(split.messages) == items
