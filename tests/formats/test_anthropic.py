"""Anthropic Messages <-> our messages: exact round trips, tool results, replies."""

from __future__ import annotations

from typing import Any

import anthropic.types
from hypothesis import given

from fastpaca_core.formats import (
    from_anthropic,
    reply_from_anthropic,
    to_anthropic,
    to_openai_chat,
    to_responses_input,
)
from fastpaca_core.model import Message

from .strategies import anthropic_histories
from .support import ROUND_TRIPS, check_stored, valid_anthropic


@ROUND_TRIPS
@given(anthropic_histories())
def test_round_trip_is_exact(turns: list[dict[str, Any]]) -> None:
    valid_anthropic(turns)
    split = from_anthropic(turns)
    assert split.preamble == []
    check_stored(split.messages)
    payload = to_anthropic(split.messages)
    assert payload.system is None
    assert payload.messages == turns


def test_tool_results_are_a_tool_message_before_the_user_text() -> None:
    turns: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Oslo and Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two calls.", "signature": "EqQB"},
                {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "tu_2", "name": "weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "tu_2", "content": "rain", "is_error": True},
                {
                    "type": "tool_result",
                    "tool_use_id": "tu_1",
                    "content": [{"type": "text", "text": "sun"}],
                    "cache_control": {"type": "ephemeral"},
                },
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]
    split = from_anthropic(turns)
    assert [m.role for m in split.messages] == ["user", "assistant", "tool", "user"]
    thinking, *_ = split.messages[1].parts
    assert thinking == {
        "type": "reasoning",
        "text": "Two calls.",
        "providerMetadata": {"anthropic": {"signature": "EqQB"}},
    }
    assert split.messages[2].parts == [
        {
            "type": "tool-result",
            "toolCallId": "tu_2",
            "toolName": "weather",
            "output": "rain",
            "isError": True,
        },
        {
            "type": "tool-result",
            "toolCallId": "tu_1",
            "toolName": "weather",
            "output": [{"type": "text", "text": "sun"}],
            "providerMetadata": {"anthropic": {"cache_control": {"type": "ephemeral"}}},
        },
    ]
    assert to_anthropic(split.messages).messages == turns
    chat = to_openai_chat(split.messages)
    assert [m["role"] for m in chat] == ["user", "assistant", "tool", "tool", "user"]
    assert "reasoning_content" not in chat[1]  # a signed thinking block is Anthropic's alone
    assert chat[3]["content"] == [{"type": "text", "text": "sun"}]


def test_files_and_unknown_blocks() -> None:
    turns: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "héllo"},
                    "title": "notes.txt",
                    "citations": {"enabled": True},
                },
                {"type": "image", "source": {"type": "file", "file_id": "file_011"}},
                {"type": "search_result", "source": "s", "title": "t", "content": []},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "redacted_thinking", "data": "EmwKAhgB"},
                {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}},
            ],
        },
    ]
    split = from_anthropic(turns)
    document, image, search = split.messages[0].parts
    assert document == {
        "type": "file",
        "mediaType": "text/plain",
        "url": "data:text/plain;base64,aMOpbGxv",
        "filename": "notes.txt",
        "providerMetadata": {"anthropic": {"citations": {"enabled": True}}},
    }
    assert image["providerMetadata"] == {"anthropic": {"fileId": True}}
    assert search["type"] == "data-anthropic-block"
    assert split.messages[1].parts[0]["providerMetadata"] == {
        "anthropic": {"redactedData": "EmwKAhgB"}
    }
    assert to_anthropic(split.messages).messages == turns
    # OpenAI: the text document is a file; Anthropic's file id and blocks are not
    assert to_openai_chat(split.messages) == [
        {
            "role": "user",
            "content": [
                {
                    "type": "file",
                    "file": {"file_data": document["url"], "filename": "notes.txt"},
                }
            ],
        }
    ]


def test_stored_messages_from_elsewhere() -> None:
    messages = [
        Message("system", [{"type": "text", "text": "rules"}]),
        Message("user", [{"type": "text", "text": "a"}]),
        Message(
            "user",
            [{"type": "file", "mediaType": "audio/wav", "url": "data:audio/wav;base64,UklG"}],
        ),
        Message(
            "assistant",
            [
                {"type": "reasoning", "text": "plain reasoning has no signature"},
                {"type": "text", "text": ""},
                {
                    "type": "tool-shell",
                    "toolCallId": "k",
                    "state": "input-available",
                    "input": "ls -la",
                },
            ],
        ),
    ]
    payload = to_anthropic(messages)
    assert payload.system == "rules"
    assert payload.messages == [
        {"role": "user", "content": "a"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "k", "name": "shell", "input": {"input": "ls -la"}}
            ],
        },
    ]


def test_unreadable_turns_are_kept_verbatim() -> None:
    turns: list[dict[str, Any]] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": 7},
        {"role": "user", "content": [{"type": "tool_use", "id": "x"}]},
    ]
    split = from_anthropic(turns)
    assert split.messages[1].parts[0]["type"] == "data-anthropic-message"
    assert split.messages[2].parts[0]["type"] == "data-anthropic-block"
    assert to_anthropic(split.messages).messages == turns


def _reply(content: list[dict[str, Any]]) -> dict[str, Any]:
    body = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 472,
            "output_tokens": 91,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    anthropic.types.Message.model_validate(body)
    return body


CONTENT: list[dict[str, Any]] = [
    {"type": "thinking", "thinking": "The user wants the weather.", "signature": "EqQBCkgIARAB"},
    {"type": "text", "text": "I'll check.", "citations": None},
    {
        "type": "tool_use",
        "id": "toolu_01A09q90qw90lq917835lq9",
        "name": "get_weather",
        "input": {"location": "San Francisco, CA", "unit": "celsius"},
    },
]


def test_reply_converts_back_to_its_blocks() -> None:
    body = _reply(CONTENT)
    dumped = anthropic.types.Message.model_validate(body).model_dump()
    for reply in (reply_from_anthropic(body), reply_from_anthropic(dumped)):
        assert reply.role == "assistant" and reply.token_count == 91
        assert [p["type"] for p in reply.parts] == ["reasoning", "text", "tool-get_weather"]
        expected = [{k: v for k, v in b.items() if v is not None} for b in CONTENT]
        assert to_anthropic([reply]).messages == [{"role": "assistant", "content": expected}]
    # continued through OpenAI: the text and the call
    items = to_responses_input([reply_from_anthropic(body)])
    assert items == [
        {"role": "assistant", "content": "I'll check."},
        {
            "type": "function_call",
            "arguments": '{"location":"San Francisco, CA","unit":"celsius"}',
            "call_id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
        },
    ]


def test_empty_reply_gives_no_turn() -> None:
    reply = reply_from_anthropic(_reply([]))
    assert reply == Message("assistant", [], {}, 91)
    assert to_anthropic([reply]).messages == []
