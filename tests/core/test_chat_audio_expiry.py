"""A spoken Chat reply goes back by its audio id only while the upstream holds
the audio (``expires_at``, less ``AUDIO_EXPIRY_MARGIN``); after, as its
transcript. A dead id would make the upstream refuse every later call of a
conversation whose window still holds the reply."""

from __future__ import annotations

import json
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from fastpaca_core.formats import from_openai_chat, reply_from_chat_completion, to_openai_chat
from fastpaca_core.formats.openai_chat import AUDIO_EXPIRY_MARGIN
from fastpaca_core.model import Message
from fastpaca_proxy.adapters.openai_chat import OpenAIChat
from fastpaca_proxy.sse import SSEParser

EXPIRES = 1741573552  # 2025-03-10, an hour after the reply
AUDIO = {"id": "audio_1", "data": "UklGRg==", "expires_at": EXPIRES, "transcript": "Hello."}
EXPIRED = [{"role": "assistant", "content": "Hello."}]
BY_ID = [{"role": "assistant", "audio": {"id": "audio_1"}}]


def _completion(message: dict[str, Any]) -> dict[str, Any]:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": EXPIRES - 3600,
        "model": "gpt-4o-audio-preview",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 40, "total_tokens": 50},
    }
    ChatCompletion.model_validate(body)  # the shape the SDK reads
    return body


def _replies(message: dict[str, Any]) -> list[Message]:
    """The reply read from the raw JSON and from the SDK model's dump (nulls and all)."""
    body = _completion(message)
    dumped = ChatCompletion.model_validate(body).model_dump()
    return [reply_from_chat_completion(body), reply_from_chat_completion(dumped)]


SPOKEN = {"role": "assistant", "content": None, "audio": AUDIO}


def test_expired_audio_goes_back_as_its_transcript() -> None:
    for reply in _replies(SPOKEN):
        for now in (EXPIRES + 86400, EXPIRES, EXPIRES - AUDIO_EXPIRY_MARGIN):
            assert to_openai_chat([reply], now=now) == EXPIRED, now
        assert to_openai_chat([reply]) == EXPIRED  # the clock: long past 2025-03-10


def test_unexpired_audio_goes_back_by_id_until_the_margin() -> None:
    for reply in _replies(SPOKEN):
        for now in (EXPIRES - 3600, EXPIRES - AUDIO_EXPIRY_MARGIN - 1):
            assert to_openai_chat([reply], now=now) == BY_ID, now
        # a call in flight must not reach the upstream after the expiry
        assert to_openai_chat([reply], now=EXPIRES - AUDIO_EXPIRY_MARGIN) == EXPIRED


def test_audio_without_expiry_goes_back_by_id() -> None:
    """A client's own message (a request's ``audio`` holds only the id): we
    cannot tell when it expires, so it is sent as it came; an expired reply
    next to it still goes as its transcript."""
    sent = [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "audio": {"id": "audio_1"}},
        {"role": "user", "content": "Again."},
    ]
    messages = [*from_openai_chat(sent).messages, reply_from_chat_completion(_completion(SPOKEN))]
    assert to_openai_chat(messages, now=EXPIRES + 86400) == [*sent, *EXPIRED]


def test_text_and_expired_audio_give_the_text_once() -> None:
    for reply in _replies({**SPOKEN, "content": "Hello."}):
        assert to_openai_chat([reply], now=EXPIRES + 1) == EXPIRED
        assert to_openai_chat([reply], now=EXPIRES - 3600) == [{**EXPIRED[0], **BY_ID[0]}]


def test_expired_audio_keeps_the_rest_of_the_reply_in_order() -> None:
    """The transcript takes ``content``'s place: after ``reasoning_content``,
    before the calls; the message's other keys stay."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    raw = {**SPOKEN, "reasoning_content": "Hm.", "tool_calls": [call], "name": "bot"}
    reply = reply_from_chat_completion({"choices": [{"message": raw}]})
    assert to_openai_chat([reply], now=EXPIRES) == [
        {
            "role": "assistant",
            "reasoning_content": "Hm.",
            "content": "Hello.",
            "tool_calls": [call],
            "name": "bot",
        }
    ]


def test_expired_audio_without_transcript_is_not_sent() -> None:
    reply = reply_from_chat_completion(
        _completion({**SPOKEN, "audio": {**AUDIO, "transcript": ""}})
    )
    assert to_openai_chat([reply], now=EXPIRES) == []
    assert to_openai_chat([reply], now=EXPIRES - 3600) == BY_ID


def _sse(*deltas: dict[str, Any], finish: str | None = None) -> bytes:
    out = b""
    for delta in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": finish if delta == {} else None}
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": EXPIRES - 3600,
            "model": "gpt-4o-audio-preview",
            "choices": [choice],
        }
        ChatCompletionChunk.model_validate(chunk)
        out += b"data: " + json.dumps(chunk).encode() + b"\n\n"
    return out + b"data: [DONE]\n\n"


def test_a_streamed_spoken_reply_expires_too() -> None:
    """As OpenAI streams it: id and transcript pieces, data pieces, the
    finish, then a last update holding only ``expires_at`` (the SDK's
    ``ChoiceDeltaAudio``). The proxy keeps them all, so the expiry is known."""
    stream = _sse(
        {"role": "assistant", "content": None},
        {"audio": {"id": "audio_1", "transcript": "Hel"}},
        {"audio": {"transcript": "lo.", "data": "UklG"}},
        {"audio": {"data": "Rg=="}},
        {},
        {"audio": {"expires_at": EXPIRES}},
        finish="stop",
    )
    assembler = OpenAIChat().assembler()
    for event in SSEParser().feed(stream):
        assembler.feed(event)
    assembler.end()
    reply, _ = assembler.reply()
    stored = reply.metadata["providerMetadata"]["openai"]["chat"]["audio"]
    assert stored == AUDIO
    assert to_openai_chat([reply], now=EXPIRES) == EXPIRED
    assert to_openai_chat([reply], now=EXPIRES - 3600) == BY_ID
