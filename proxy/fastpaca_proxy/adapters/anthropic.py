"""Anthropic Messages: ``POST .../v1/messages``.

The request's ``system`` is its preamble and stays as sent; system messages of
the stored window (a pinned prompt, a summary) follow it.

Cache breakpoints (``cache_control``) are stored with their blocks and sent
again on later turns. The client's own messages at the end of the window go
out as it sent them (see ``keep_sent``: a client resending its history
decides where its breakpoints are now). Anthropic refuses a request with more
than 4 breakpoints, which a client sending only its newest message with a
breakpoint each turn would reach from the log; so when the request holds more,
the oldest ones on turns from the log are left out until 4 remain (the
request's own ``system``, ``tools`` and messages are never changed). A
top-level ``cache_control`` (automatic caching) takes one of the 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastpaca_core.errors import ValidationError
from fastpaca_core.formats import ChatInput, from_anthropic, reply_from_anthropic, to_anthropic
from fastpaca_core.jsonutil import JSONError, loads
from fastpaca_core.model import Message

from ..sse import SSEEvent
from .base import Adapter, Assembler, Usage, anthropic_error, keep_sent

__all__ = ["AnthropicMessages"]

MAX_BREAKPOINTS = 4  # cache_control blocks Anthropic takes in one request
_BREAKPOINT = "cache_control"


def _usage(body: Mapping[str, Any]) -> Usage:
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return Usage(None, None)
    prompt = usage.get("input_tokens")
    if isinstance(prompt, int):
        for extra in ("cache_creation_input_tokens", "cache_read_input_tokens"):
            if isinstance(usage.get(extra), int):
                prompt += usage[extra]
    return Usage(prompt, usage.get("output_tokens"))


def _breakpoints(blocks: Any) -> int:
    """How many ``cache_control`` marks the blocks (and tool results' blocks) carry."""
    if type(blocks) is not list:
        return 0
    count = 0
    for block in blocks:
        if isinstance(block, dict):
            if _BREAKPOINT in block:
                count += 1
            if type(block.get("content")) is list:
                count += _breakpoints(block["content"])
    return count


def _unmark(blocks: list[Any], excess: int) -> tuple[list[Any], int]:
    """A copy of ``blocks`` without their first ``excess`` breakpoints, and how many went."""
    out: list[Any] = []
    removed = 0
    for block in blocks:
        if removed < excess and isinstance(block, dict):
            if _BREAKPOINT in block:
                block = {k: v for k, v in block.items() if k != _BREAKPOINT}
                removed += 1
            nested = block.get("content")
            if removed < excess and type(nested) is list and _breakpoints(nested):
                inner, gone = _unmark(nested, excess - removed)
                block, removed = {**block, "content": inner}, removed + gone
        out.append(block)
    return out, removed


def _cap_breakpoints(body: Mapping[str, Any], turns: list[dict[str, Any]], stored: int) -> None:
    """Leave out the oldest breakpoints of the first ``stored`` turns (the
    log's) while the request has more than Anthropic takes."""
    lists = [turn.get("content") for turn in turns[:stored]]  # a string content has none
    counts = [0 if type(content) is str else _breakpoints(content) for content in lists]
    if not any(counts):
        return  # the request's own are as it sent them
    excess = sum(counts) + sum(_breakpoints(turn.get("content")) for turn in turns[stored:])
    excess += _breakpoints(body.get("system")) + _breakpoints(body.get("tools"))
    # a top-level cache_control (automatic caching) marks a block too, and takes a slot
    excess += body.get(_BREAKPOINT) is not None
    excess -= MAX_BREAKPOINTS
    for index in range(len(counts)):
        if excess <= 0:
            return
        if counts[index]:
            content, removed = _unmark(turns[index]["content"], excess)
            turns[index] = {**turns[index], "content": content}
            excess -= removed


def _index(data: Mapping[str, Any]) -> int | None:
    index = data.get("index")
    return index if type(index) is int else None


def _present(values: Any) -> dict[str, Any]:
    """The keys of a mapping that are not ``null`` (none when it is not one)."""
    return {k: v for k, v in values.items() if v is not None} if isinstance(values, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class _MessagesAssembler(Assembler):
    """Builds the message as the SDK's stream accumulator does: a ``null`` in
    a block's start or in ``message_delta``'s usage counts as absent (the
    latter keeps ``message_start``'s figure); an event it cannot read is
    passed over, never raised (the client's stream goes on)."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.partial_json: dict[int, list[str]] = {}
        self.usage: dict[str, Any] = {}

    def feed(self, event: SSEEvent) -> None:
        try:
            data = loads(event.data)
        except JSONError:
            return
        if not isinstance(data, dict):
            return
        kind = data.get("type") or event.event
        if kind == "message_start":
            message = data.get("message")
            self.message = dict(message) if isinstance(message, dict) else {}
            self.usage.update(_present(self.message.get("usage")))
        elif kind == "content_block_start":
            index = _index(data)
            if index is not None:
                self.blocks[index] = _present(data.get("content_block"))
        elif kind == "content_block_delta":
            index, delta = _index(data), data.get("delta")
            if index is not None and isinstance(delta, dict):
                self._delta(index, delta)
        elif kind == "content_block_stop":
            index = _index(data)
            pieces = self.partial_json.pop(index, None) if index is not None else None
            if pieces is not None and index in self.blocks:
                text = "".join(pieces)
                try:
                    self.blocks[index]["input"] = loads(text) if text else {}
                except JSONError:
                    self.blocks[index]["input"] = text
        elif kind == "message_delta":
            self.message.update(_present(data.get("delta")))
            self.usage.update(_present(data.get("usage")))
        elif kind == "message_stop":
            self.complete = True
        elif kind == "error":
            self.failed = True

    def _delta(self, index: int, delta: Mapping[str, Any]) -> None:
        block = self.blocks.setdefault(index, {})
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = _text(block.get("text")) + _text(delta.get("text"))
        elif kind == "input_json_delta":
            self.partial_json.setdefault(index, []).append(_text(delta.get("partial_json")))
        elif kind == "thinking_delta":
            block["thinking"] = _text(block.get("thinking")) + _text(delta.get("thinking"))
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature")
        elif kind == "citations_delta":
            citations = block.get("citations")
            block["citations"] = [
                *(citations if isinstance(citations, list) else []),
                delta.get("citation"),
            ]
        elif kind == "compaction_delta":  # the compaction beta: the block's whole content
            block.update(_present({k: delta.get(k) for k in ("content", "encrypted_content")}))

    def reply(self) -> tuple[Message, Usage]:
        body = {
            **self.message,
            "content": [self.blocks[i] for i in sorted(self.blocks)],
            "usage": self.usage,
        }
        return reply_from_anthropic(body), _usage(body)


class AnthropicMessages(Adapter):
    provider = "anthropic"
    path = "v1/messages"

    def split(self, body: Mapping[str, Any]) -> ChatInput:
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ValidationError("messages", "must be a list of message objects")
        return from_anthropic(messages)

    def build(
        self, body: Mapping[str, Any], preamble: list[dict[str, Any]], window: Sequence[Message]
    ) -> dict[str, Any]:
        payload = to_anthropic(window)
        turns = payload.messages
        own, _, _ = keep_sent(turns, body.get("messages"))
        # the last turn holds the request's newest message, whatever the walk found
        _cap_breakpoints(body, turns, len(turns) - max(own, 1))
        out = {**body, "messages": turns}
        if payload.system:
            system = body.get("system")
            if isinstance(system, list):
                out["system"] = [*system, {"type": "text", "text": payload.system}]
            elif isinstance(system, str) and system:
                out["system"] = f"{system}\n\n{payload.system}"
            else:
                out["system"] = payload.system
        return out

    def reply(self, body: Mapping[str, Any]) -> tuple[Message, Usage]:
        return reply_from_anthropic(body), _usage(body)

    def assembler(self) -> Assembler:
        return _MessagesAssembler()

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return anthropic_error(status, code, message)
