"""OpenAI Chat Completions <-> our messages: exact round trips, stored shape, replies."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from openai.types.chat import ChatCompletion

from fastpaca_core.formats import (
    from_openai_chat,
    reply_from_chat_completion,
    to_anthropic,
    to_openai_chat,
    to_responses_input,
)
from fastpaca_core.model import Message

from .strategies import chat_histories
from .support import ROUND_TRIPS, check_stored, valid_chat


@ROUND_TRIPS
@given(chat_histories())
def test_round_trip_is_exact(history: list[dict[str, Any]]) -> None:
    valid_chat(history)
    split = from_openai_chat(history)
    assert split.preamble == [m for m in history if m["role"] in ("system", "developer")]
    check_stored(split.messages)
    assert to_openai_chat(split.messages) == [m for m in split_out(history)]


def split_out(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in history if m["role"] not in ("system", "developer")]


def test_stored_shape() -> None:
    history = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                },
            ],
            "name": "alice",
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "look", "arguments": '{"a": 1}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "result", "arguments": "{oops"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "ok"}]},
        {"role": "tool", "tool_call_id": "c9", "content": "orphan"},
    ]
    split = from_openai_chat(history)
    assert split.preamble == [history[0]]
    user, assistant, r1, r2, r3 = split.messages
    assert user == Message(
        "user",
        [
            {"type": "text", "text": "What is this?"},
            {
                "type": "file",
                "mediaType": "image/png",
                "url": "data:image/png;base64,AAAA",
                "providerMetadata": {"openai": {"detail": "low"}},
            },
        ],
        {"providerMetadata": {"openai": {"chat": {"name": "alice"}}}},
    )
    assert assistant.parts == [
        {
            "type": "tool-look",
            "toolCallId": "c1",
            "state": "input-available",
            "input": {"a": 1},
            "callProviderMetadata": {"openai": {"arguments": '{"a": 1}'}},
        },
        {
            "type": "dynamic-tool",
            "toolName": "result",
            "toolCallId": "c2",
            "state": "input-available",
            "input": "{oops",
            "callProviderMetadata": {"openai": {"invalidArguments": True}},
        },
    ]
    assert r1.parts == [
        {"type": "tool-result", "toolCallId": "c1", "toolName": "look", "output": "a cat"}
    ]
    assert r2.parts[0]["toolName"] == "result"
    assert r2.parts[0]["output"] == [{"type": "text", "text": "ok"}]
    assert r3.parts[0]["toolName"] == ""
    back = to_openai_chat(split.messages)
    assert back[1]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert back[1]["tool_calls"][1]["function"]["arguments"] == "{oops"
    assert "content" not in back[1]
    # other providers get the parsed input; Anthropic wants an object
    uses = to_anthropic(split.messages).messages[1]["content"]
    assert [u["input"] for u in uses] == [{"a": 1}, {"input": "{oops"}]
    assert to_responses_input(split.messages)[1]["arguments"] == '{"a": 1}'


def test_refusals_reasoning_and_custom_calls() -> None:
    history = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "reasoning_content": "thinking",
            "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "b"}],
            "refusal": "no",
            "tool_calls": [{"id": "k", "type": "custom", "custom": {"name": "sh", "input": "ls"}}],
        },
        {"role": "tool", "tool_call_id": "k", "content": "file.txt"},
    ]
    split = from_openai_chat(history)
    kinds = [(p["type"], p.get("providerMetadata")) for p in split.messages[1].parts[:4]]
    assert kinds == [
        ("reasoning", {"openai": {"reasoningContent": True}}),
        ("text", None),
        ("text", {"openai": {"refusal": True, "contentPart": True}}),
        ("text", {"openai": {"refusal": True}}),
    ]
    assert split.messages[1].parts[4]["callProviderMetadata"] == {"openai": {"custom": True}}
    assert to_openai_chat(split.messages) == history
    # Responses: a refusal content item and a custom tool call
    items = to_responses_input(split.messages)
    assert items[1]["content"][1:] == [
        {"type": "refusal", "refusal": "b"},
        {"type": "refusal", "refusal": "no"},
    ]
    assert items[2] == {"type": "custom_tool_call", "input": "ls", "call_id": "k", "name": "sh"}
    assert items[3]["type"] == "custom_tool_call_output"


def test_unreadable_messages_and_items_are_kept_verbatim() -> None:
    history: list[dict[str, Any]] = [
        {"role": "function", "content": "42"},  # no name: unreadable
        {"role": "user"},
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "x"}}]},
        {"role": "assistant", "tool_calls": [{"id": "z", "type": "mystery", "mystery": {}}]},
    ]
    split = from_openai_chat(history)
    assert [m.role for m in split.messages] == ["user", "user", "user", "assistant"]
    assert split.messages[0].parts[0]["type"] == "data-openai-chat-message"
    assert split.messages[2].parts[0]["type"] == "data-openai-chat-part"
    assert split.messages[3].parts[0]["type"] == "data-openai-chat-call"
    assert to_openai_chat(split.messages) == history
    # nothing of it reaches another provider
    assert to_anthropic(split.messages).messages == []


def test_stored_messages_from_elsewhere() -> None:
    messages = [
        Message("system", [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]),
        Message(
            "assistant",
            [
                {
                    "type": "reasoning",
                    "text": "r",
                    "providerMetadata": {"anthropic": {"signature": "s"}},
                },
                {
                    "type": "reasoning",
                    "text": "r",
                    "providerMetadata": {"openai": {"itemId": "rs"}},
                },
                {
                    "type": "file",
                    "mediaType": "image/png",
                    "url": "file_1",
                    "providerMetadata": {"anthropic": {"fileId": True}},
                },
                {
                    "type": "text",
                    "text": "done",
                    "providerMetadata": {"anthropic": {"citations": []}},
                },
            ],
        ),
    ]
    assert to_openai_chat(messages) == [
        {"role": "system", "content": "one\n\ntwo"},
        {"role": "assistant", "content": "done"},
    ]


def _completion(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_abc",
        **extra,
    }
    ChatCompletion.model_validate(body)
    return body


def _replies(body: dict[str, Any]) -> list[Message]:
    """The reply read from the raw JSON and from the SDK model's dump (nulls and all)."""
    dumped = ChatCompletion.model_validate(body).model_dump()
    return [reply_from_chat_completion(body), reply_from_chat_completion(dumped)]


def test_reply_with_parallel_tool_calls() -> None:
    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "time", "arguments": '{"zone": "CET"}'},
        },
    ]
    message = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "annotations": [],
        "tool_calls": calls,
    }
    for reply in _replies(_completion(message)):
        assert reply.token_count == 10
        assert reply.metadata == {}
        assert [p["type"] for p in reply.parts] == ["tool-weather", "tool-time"]
        assert to_openai_chat([reply]) == [{"role": "assistant", "tool_calls": calls}]


def test_reply_with_annotations_refusal_and_audio() -> None:
    citation = {
        "type": "url_citation",
        "url_citation": {
            "end_index": 5,
            "start_index": 0,
            "title": "Ex",
            "url": "https://example.test/",
        },
    }
    message = {"role": "assistant", "content": "Hello", "refusal": None, "annotations": [citation]}
    for reply in _replies(_completion(message)):
        assert reply.metadata == {
            "providerMetadata": {"openai": {"chat": {"annotations": [citation]}}}
        }
        # annotations are kept, but a request has no place for them
        assert to_openai_chat([reply]) == [{"role": "assistant", "content": "Hello"}]
    refused = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    for reply in _replies(_completion(refused)):
        assert to_openai_chat([reply]) == [
            {"role": "assistant", "refusal": "I can't help with that."}
        ]
    audio = {"id": "audio_1", "data": "UklG", "expires_at": 4102444800, "transcript": "Hi"}
    spoken = {"role": "assistant", "content": None, "audio": audio}
    for reply in _replies(_completion(spoken)):
        assert to_openai_chat([reply]) == [{"role": "assistant", "audio": {"id": "audio_1"}}]


def test_reply_with_reasoning_content_and_edge_cases() -> None:
    # OpenAI-compatible servers (DeepSeek, vLLM...) add reasoning_content
    message = {"role": "assistant", "content": "4", "reasoning_content": "2+2"}
    reply = reply_from_chat_completion(_completion(message))
    assert to_openai_chat([reply]) == [message]
    empty = reply_from_chat_completion({"choices": [], "usage": None})
    assert empty == Message("assistant", [], {}, None)
