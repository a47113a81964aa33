"""Anthropic Messages on the wire: the ``message`` object and its streaming events.

A stream is ``event: <type>`` / ``data: {...}`` pairs: ``message_start`` (usage
with the input tokens), per content block ``content_block_start`` /
``content_block_delta`` (``text_delta``, ``input_json_delta``,
``thinking_delta``, ``signature_delta``) / ``content_block_stop``, a ``ping``
after the first block starts, then ``message_delta`` (``stop_reason`` and the
cumulative usage: input, cache and output tokens) and ``message_stop``.

Token figures: the neutral ``prompt_tokens`` is the whole prompt, so
``input_tokens`` is it minus cache reads and cache writes, as Anthropic counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .errors import anthropic_error_object
from .script import ErrorReply, Event, FinishReason, Turn

_STOP: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "refusal": "refusal",
}

SIGNATURE = "ZmFrZS1zaWduYXR1cmU="


# what ``message_delta`` reports (the SDK's ``MessageDeltaUsage``)
_DELTA_USAGE = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def usage(turn: Turn, *, output_tokens: int | None = None) -> dict[str, Any]:
    cached = turn.cached_tokens + turn.cache_creation_tokens
    return {
        "input_tokens": max(0, turn.prompt_tokens - cached),
        "cache_creation_input_tokens": turn.cache_creation_tokens,
        "cache_read_input_tokens": turn.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": turn.cache_creation_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": turn.completion_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }


def _blocks(turn: Turn) -> list[dict[str, Any]]:
    """The complete content blocks, in order."""
    blocks: list[dict[str, Any]] = []
    if turn.reasoning is not None:
        blocks.append({"type": "thinking", "thinking": turn.reasoning, "signature": SIGNATURE})
    text = turn.text + (turn.refusal or "")
    if text or not turn.tool_calls:
        blocks.append({"type": "text", "text": text})
    for call in turn.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.call_id,
                "name": call.name,
                "input": _input_object(call.arguments),
            }
        )
    return blocks


def _input_object(arguments: str) -> Any:
    return json.loads(arguments) if arguments else {}


def _message(turn: Turn, *, content: list[dict[str, Any]], final: bool) -> dict[str, Any]:
    return {
        "id": turn.id,
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": content,
        "stop_reason": _STOP[turn.finish_reason] if final else None,
        "stop_sequence": None,
        "usage": usage(turn) if final else usage(turn, output_tokens=1),
    }


def message(turn: Turn) -> dict[str, Any]:
    """The non-streaming ``message`` object."""
    return _message(turn, content=_blocks(turn), final=True)


def _e(data: dict[str, Any], delta: bool = False) -> Event:
    return Event(data, event=str(data["type"]), delta=delta)


def stream(turn: Turn) -> Iterator[Event]:
    """The SSE events of a streamed message."""
    yield _e({"type": "message_start", "message": _message(turn, content=[], final=False)})
    calls = iter(turn.tool_calls)
    for index, block in enumerate(_blocks(turn)):
        kind = block["type"]
        start: dict[str, Any]
        deltas: list[dict[str, Any]]
        if kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in turn.pieces(block[kind])]
            deltas.append({"type": "signature_delta", "signature": SIGNATURE})
        elif kind == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in turn.pieces(block["text"])]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            call = next(calls)
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [
                {"type": "input_json_delta", "partial_json": p}
                for p in turn.argument_pieces(call.arguments)
            ]
        yield _e({"type": "content_block_start", "index": index, "content_block": start})
        if index == 0:
            yield _e({"type": "ping"})
        for delta in deltas:
            yield _e({"type": "content_block_delta", "index": index, "delta": delta}, delta=True)
        yield _e({"type": "content_block_stop", "index": index})
    yield _e(
        {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP[turn.finish_reason], "stop_sequence": None},
            # cumulative figures, input ones included, as Anthropic sends them now
            # (langchain-anthropic reads a stream's usage from this event only)
            "usage": {k: v for k, v in usage(turn).items() if k in _DELTA_USAGE},
        }
    )
    yield _e({"type": "message_stop"})


def stream_error(err: ErrorReply, sequence_number: int) -> Iterator[Event]:
    """The ``error`` event an Anthropic stream sends when it fails mid-way."""
    del sequence_number
    yield _e({"type": "error", "error": anthropic_error_object(err)})
