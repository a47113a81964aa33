"""Across formats: a conversation begun in one API continues in another.

For every pair of formats, a history read from the first, written in the
second, read back and written in the first again keeps every text, file,
tool call (id, name, input) and tool result (id, name, output), in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastpaca_core.formats import (
    from_anthropic,
    from_openai_chat,
    from_responses_input,
    reply_from_anthropic,
    reply_from_chat_completion,
    to_anthropic,
    to_openai_chat,
    to_responses_input,
)
from fastpaca_core.model import Message

from .strategies import anthropic_histories, chat_histories, responses_histories
from .support import CROSS, check_stored, events, valid_anthropic, valid_chat

Read = Callable[[Any], list[Message]]
Write = Callable[[Sequence[Message]], list[dict[str, Any]]]

FORMATS: dict[str, tuple[Read, Write, Callable[..., st.SearchStrategy[Any]]]] = {
    "chat": (
        lambda m: from_openai_chat(m).messages,
        to_openai_chat,
        chat_histories,
    ),
    "responses": (
        lambda m: from_responses_input(m).messages,
        to_responses_input,
        responses_histories,
    ),
    "anthropic": (
        lambda m: from_anthropic(m).messages,
        lambda m: to_anthropic(m).messages,
        anthropic_histories,
    ),
}
PAIRS = [(a, b) for a in FORMATS for b in FORMATS if a != b]


@pytest.mark.parametrize(("source", "target"), PAIRS)
@CROSS
@given(data=st.data())
def test_texts_files_calls_and_results_survive(source: str, target: str, data: Any) -> None:
    read_a, write_a, histories = FORMATS[source]
    read_b, write_b, _ = FORMATS[target]
    history = data.draw(histories(portable=True))
    ours = read_a(history)
    there = write_b(ours)
    if target == "chat":
        valid_chat(there)
    elif target == "anthropic":
        valid_anthropic(there)
    theirs = read_b(there)
    check_stored(theirs)
    home = read_a(write_a(theirs))
    assert events(ours) == events(theirs) == events(home)


def test_a_chat_conversation_continues_in_anthropic_and_back() -> None:
    """The proxy's case: history stored from one API, the next request from another."""
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12 degrees"},
    ]
    stored = from_openai_chat(chat).messages
    stored.append(
        reply_from_chat_completion(
            {"choices": [{"message": {"role": "assistant", "content": "12 degrees."}}]}
        )
    )
    # the next turn arrives through Anthropic
    stored += from_anthropic([{"role": "user", "content": "And tomorrow?"}]).messages
    payload = to_anthropic(stored)
    assert payload.messages == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "12 degrees"}],
        },
        {"role": "assistant", "content": "12 degrees."},
        {"role": "user", "content": "And tomorrow?"},
    ]
    stored.append(
        reply_from_anthropic({"content": [{"type": "text", "text": "Rain."}], "usage": {}})
    )
    # and back to Chat Completions: the original messages, verbatim arguments included
    assert to_openai_chat(stored) == [
        *chat[1:],
        {"role": "assistant", "content": "12 degrees."},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": "Rain."},
    ]


def test_what_another_provider_cannot_replay_is_left_out() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
    chat = [
        {"role": "user", "content": [{"type": "text", "text": "listen"}, audio]},
        {"role": "assistant", "reasoning_content": "hmm", "content": "ok"},
    ]
    stored = from_openai_chat(chat).messages
    assert to_responses_input(stored) == [
        {"role": "user", "content": "listen"},
        {"role": "assistant", "content": "ok"},
    ]
    assert to_anthropic(stored).messages == [
        {"role": "user", "content": "listen"},
        {"role": "assistant", "content": "ok"},
    ]
    url_doc = {"type": "document", "source": {"type": "url", "url": "https://example.test/a.pdf"}}
    stored = from_anthropic([{"role": "user", "content": [url_doc, {"type": "text", "text": "x"}]}])
    assert to_openai_chat(stored.messages) == [{"role": "user", "content": "x"}]
    assert to_responses_input(stored.messages) == [
        {
            "role": "user",
            "content": [
                {"type": "input_file", "file_url": "https://example.test/a.pdf"},
                {"type": "input_text", "text": "x"},
            ],
        }
    ]
    file_id = {"type": "input_file", "file_id": "file-1"}
    stored = from_responses_input([{"role": "user", "content": [file_id]}])
    assert to_anthropic(stored.messages).messages == []
    assert to_openai_chat(stored.messages) == [
        {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}
    ]
