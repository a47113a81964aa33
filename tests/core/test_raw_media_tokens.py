"""Media a converter kept verbatim in a raw provider part (an item it could
not map losslessly) is counted as media, not as the base64 in its JSON: a
1 MB image so kept counted as hundreds of thousands of tokens, and the window
dropped the rest of the conversation to fit it."""

from __future__ import annotations

import base64
import functools
import random
import struct
import threading
from collections.abc import Callable
from typing import Any

from fastpaca_core.formats import from_anthropic, from_openai_chat, from_responses_input
from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.mediatokens import IMAGE_TOKENS, PDF_PAGE_TOKENS, WALK_LIMIT
from fastpaca_core.model import Message
from fastpaca_core.tokens import TokenCounter, reads_much

COUNTER = TokenCounter()
# a raw part's JSON keeps the keys the mapped part files elsewhere (and the
# one that made it raw): a few tokens more
MARGIN = 40


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _wav(seconds: float) -> bytes:
    rate = 16_000
    data = random.Random(3).randbytes(int(rate * 2 * seconds))
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    size = struct.pack("<I", 36 + len(data))
    return b"RIFF" + size + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", len(data)) + data


NOISE = random.Random(7).randbytes(300_000)  # base64 of it tokenises as base64 does
PNG = _b64(b"\x89PNG\r\n\x1a\n" + NOISE)
WAV = _b64(_wav(3.0))  # 3 s: 30 tokens
PDF = _b64(b"%PDF-1.7\n" + b"1 0 obj << /Type /Page >> endobj\n" * 3 + NOISE)


@functools.cache
def _as_text(payload: str) -> int:
    return COUNTER.count_text(payload)


def _one(messages: list[Message], kind: str) -> Message:
    assert len(messages) == 1 and [p["type"] for p in messages[0].parts] == [kind], messages
    return messages[0]


def _same_cost(raw: Message, mapped: Message, payload: str, media: int) -> None:
    count = COUNTER.count_fresh(raw)
    assert abs(count - COUNTER.count_fresh(mapped)) <= MARGIN, (count, mapped)
    assert media <= count <= media + 2 * MARGIN, count
    assert count * 10 < _as_text(payload)  # what it counted as before
    assert COUNTER.at_most(raw) >= count


def _chat(item: dict[str, Any]) -> list[Message]:
    return from_openai_chat([{"role": "user", "content": [item]}]).messages


def _responses(item: dict[str, Any]) -> list[Message]:
    return from_responses_input([{"role": "user", "content": [item]}]).messages


def _anthropic(block: dict[str, Any]) -> list[Message]:
    return from_anthropic([{"role": "user", "content": [block]}]).messages


def test_chat_content_items_kept_raw() -> None:
    raw, mapped = "data-openai-chat-part", "file"
    url = "data:image/png;base64," + PNG
    image: Callable[..., dict[str, Any]] = lambda **more: {  # noqa: E731
        "type": "image_url",
        "image_url": {"url": url, "detail": "low", **more},
    }
    _same_cost(
        _one(_chat(image(some_unknown_key=1)), raw), _one(_chat(image()), mapped), PNG, IMAGE_TOKENS
    )
    audio: Callable[..., dict[str, Any]] = lambda **more: {  # noqa: E731
        "type": "input_audio",
        "input_audio": {"data": WAV, "format": "wav", **more},
    }
    _same_cost(_one(_chat(audio(x=1)), raw), _one(_chat(audio()), mapped), WAV, 30)
    pdf: Callable[..., dict[str, Any]] = lambda **more: {  # noqa: E731
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64," + PDF, "filename": "a.pdf", **more},
    }
    _same_cost(_one(_chat(pdf(x=1)), raw), _one(_chat(pdf()), mapped), PDF, 3 * PDF_PAGE_TOKENS)


def test_responses_content_items_kept_raw() -> None:
    raw, mapped = "data-openai-content", "file"
    url = "data:image/png;base64," + PNG
    image = {"type": "input_image", "image_url": url}
    both = {**image, "file_id": "file-1"}  # not mappable: kept raw
    _same_cost(_one(_responses(both), raw), _one(_responses(image), mapped), PNG, IMAGE_TOKENS)
    pdf = {"type": "input_file", "file_data": "data:application/pdf;base64," + PDF}
    with_url = {**pdf, "file_url": "https://example.com/a.pdf"}
    _same_cost(
        _one(_responses(with_url), raw),
        _one(_responses(pdf), mapped),
        PDF,
        3 * PDF_PAGE_TOKENS,
    )
    # audio, which Responses content maps to no part: as the same audio in Chat
    audio = {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}
    _same_cost(_one(_responses(audio), raw), _one(_chat(audio), mapped), WAV, 30)


def test_anthropic_blocks_kept_raw() -> None:
    raw, mapped = "data-anthropic-block", "file"

    def block(kind: str, media: str, data: str, **more: Any) -> dict[str, Any]:
        source = {"type": "base64", "media_type": media, "data": data, **more}
        return {"type": kind, "source": source}

    _same_cost(
        _one(_anthropic(block("image", "image/png", PNG, some_unknown_key=1)), raw),
        _one(_anthropic(block("image", "image/png", PNG)), mapped),
        PNG,
        IMAGE_TOKENS,
    )
    pdf = "application/pdf"
    _same_cost(
        _one(_anthropic(block("document", pdf, PDF, x=1)), raw),
        _one(_anthropic(block("document", pdf, PDF)), mapped),
        PDF,
        3 * PDF_PAGE_TOKENS,
    )


def test_media_deep_in_whole_raw_messages_and_items() -> None:
    """Whole messages / items kept raw, and raw items of a tool's result."""
    url = "data:image/png;base64," + PNG
    image = {"type": "image_url", "image_url": {"url": url}}
    chat = from_openai_chat([{"role": "oddity", "content": [image]}]).messages
    screenshot = {"type": "computer_screenshot", "image_url": url}
    item = {"type": "computer_call_output", "call_id": "c1", "output": screenshot}
    responses = from_responses_input([item]).messages
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    # a block that is no object: the turn cannot be read, kept whole
    anthropic = from_anthropic([{"role": "user", "content": [block, 5]}]).messages
    tool = from_openai_chat(
        [
            {"role": "assistant", "tool_calls": [_call()]},
            {"role": "tool", "tool_call_id": "c1", "content": [image]},
        ]
    ).messages[1]
    # a Chat tool message's image item: a raw item of the result's output
    assert [p["type"] for p in tool.parts[0]["output"]] == ["data-openai-chat-part"]
    raws = [
        _one(chat, "data-openai-chat-message"),
        _one(responses, "data-openai-item"),
        _one(anthropic, "data-anthropic-message"),
        tool,
    ]
    for message in raws:
        count = COUNTER.count_fresh(message)
        assert IMAGE_TOKENS <= count <= IMAGE_TOKENS + 2 * MARGIN, (message.parts[0]["type"], count)
        assert COUNTER.at_most(message) >= count


def _call() -> dict[str, Any]:
    return {"id": "c1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}


def test_a_raw_part_without_media_counts_its_json() -> None:
    item = {"type": "input_image", "image_url": "https://example.com/a.png", "file_id": "f"}
    messages = [
        _one(_chat({"type": "mystery", "value": "data:x"}), "data-openai-chat-part"),
        _one(
            _anthropic({"type": "search_result", "title": "t", "content": []}),
            "data-anthropic-block",
        ),
        _one(
            _responses({"type": "input_file", "file_data": "", "file_url": "https://x"}),
            "data-openai-content",
        ),
    ]
    for message in messages:
        (part,) = message.parts
        assert COUNTER.count_fresh(message) == 4 + COUNTER.count_text(dumps_str(part))
        assert not reads_much(message)
    # an image by URL or file id costs an image, as a mapped one does
    image = _one(_responses(item), "data-openai-content")
    assert IMAGE_TOKENS <= COUNTER.count_fresh(image) <= IMAGE_TOKENS + MARGIN


async def test_a_big_file_held_raw_is_read_off_the_event_loop(readers: list[str]) -> None:
    loop_thread = threading.current_thread().name
    pdf = {"type": "file", "file": {"file_data": "data:application/pdf;base64," + PDF, "x": 1}}
    tool = [
        {"role": "assistant", "tool_calls": [_call()]},
        {"role": "tool", "tool_call_id": "c1", "content": [pdf]},
    ]
    big = [
        _one(_chat(pdf), "data-openai-chat-part"),
        _one(
            _anthropic(
                {
                    "type": "document",
                    "source": {
                        "type": "base64",
                        "media_type": "application/pdf",
                        "data": PDF,
                        "x": 1,
                    },
                }
            ),
            "data-anthropic-block",
        ),
        from_openai_chat(tool).messages[1],
    ]
    for message in big:
        assert reads_much(message), message.parts[0]["type"]
        readers.clear()
        counted = await TokenCounter(cache_size=0).count_messages([message])
        assert readers and loop_thread not in readers, readers
        assert counted[0] >= 3 * PDF_PAGE_TOKENS
    # an image is counted at one look: nothing read, nothing to move
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG, "x": 1}}
    message = _one(_chat(image), "data-openai-chat-part")
    readers.clear()
    assert not reads_much(message)
    COUNTER.count_fresh(message)
    assert readers == []


def test_a_raw_part_too_large_to_walk_at_one_look_is_counted_off_the_loop() -> None:
    """Finding media in a raw part walks its JSON in Python: one whose objects
    and lists hold more than ``WALK_LIMIT`` keys and items is not walked on
    the event loop, but counted off it, as a big file is; its count is its
    JSON's either way (no media in it)."""

    def raw(rows: int) -> Message:
        table = [{"row": n, "cells": [n, n + 1]} for n in range(rows)]
        return Message(
            "user", [{"type": "data-anthropic-block", "data": {"type": "x", "t": table}}]
        )

    small, large = raw(WALK_LIMIT // 16), raw(WALK_LIMIT)
    assert not reads_much(small)
    assert reads_much(large)
    for message in (small, large):
        as_json = 4 + COUNTER.count_text(dumps_str(message.parts[0]))
        assert TokenCounter(cache_size=0).count_fresh(message) == as_json
