"""OpenAI Chat Completions on the wire: ``chat.completion`` and ``chat.completion.chunk``.

Streams are ``data: {chunk}`` lines ending with ``data: [DONE]``. The first
chunk carries the role, text arrives as ``content`` deltas, each tool call
starts with a chunk holding ``index``, ``id``, ``type`` and the function name,
then its arguments in pieces under the same ``index``; the last choice chunk
has an empty delta and the ``finish_reason``. With
``stream_options.include_usage`` every chunk has ``"usage": null`` and one more
chunk with empty ``choices`` carries the usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import openai_error_object
from .script import ErrorReply, Event, FinishReason, Turn

SYSTEM_FINGERPRINT = "fp_fake0000"

_FINISH: dict[FinishReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "refusal": "stop",
}


def usage(turn: Turn) -> dict[str, Any]:
    return {
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "total_tokens": turn.total_tokens,
        "prompt_tokens_details": {"cached_tokens": turn.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": turn.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(turn: Turn) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": turn.text if (turn.text or not (turn.tool_calls or turn.refusal)) else None,
        "refusal": turn.refusal,
        "annotations": [],
    }
    if turn.refusal is not None:
        message["content"] = None
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in turn.tool_calls
        ]
    return {
        "id": turn.id,
        "object": "chat.completion",
        "created": turn.created,
        "model": turn.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _FINISH[turn.finish_reason],
            }
        ],
        "usage": usage(turn),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _chunk(turn: Turn, include_usage: bool, **choice: Any) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": turn.id,
        "object": "chat.completion.chunk",
        "created": turn.created,
        "model": turn.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "logprobs": None, "finish_reason": None, **choice}],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def stream(turn: Turn, include_usage: bool) -> Iterator[Event]:
    """The SSE events of a streamed completion."""
    first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
    if turn.refusal is not None or (turn.tool_calls and not turn.text):
        first["content"] = None
    yield Event(_chunk(turn, include_usage, delta=first))
    for piece in turn.pieces(turn.text):
        yield Event(_chunk(turn, include_usage, delta={"content": piece}), delta=True)
    if turn.refusal is not None:
        for piece in turn.pieces(turn.refusal):
            yield Event(_chunk(turn, include_usage, delta={"refusal": piece}), delta=True)
    for index, call in enumerate(turn.tool_calls):
        start = {
            "index": index,
            "id": call.call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield Event(_chunk(turn, include_usage, delta={"tool_calls": [start]}))
        for piece in turn.argument_pieces(call.arguments):
            part = {"index": index, "function": {"arguments": piece}}
            yield Event(_chunk(turn, include_usage, delta={"tool_calls": [part]}), delta=True)
    yield Event(_chunk(turn, include_usage, delta={}, finish_reason=_FINISH[turn.finish_reason]))
    if include_usage:
        last = _chunk(turn, include_usage)
        last["choices"] = []
        last["usage"] = usage(turn)
        yield Event(last)
    yield Event("[DONE]")


def stream_error(err: ErrorReply, sequence_number: int) -> Iterator[Event]:
    """What a chat stream sends when it fails mid-way: a bare ``error`` object."""
    del sequence_number
    yield Event({"error": openai_error_object(err)})
