"""What the fake upstream answers: scripted replies, echo defaults, token figures.

A test queues :class:`Reply` objects (or shorthands: a ``str`` is a text reply,
an :class:`ErrorReply` is an HTTP error). Each request takes the first queued
reply whose protocol matches; with nothing queued it echoes the last user
message. :func:`resolve` turns a reply plus the request into a :class:`Turn`,
the protocol-neutral answer the renderers in ``openai_chat``, ``openai_responses``
and ``anthropic`` put on the wire.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Protocol = Literal["openai_chat", "openai_responses", "anthropic"]
PROTOCOLS: tuple[Protocol, ...] = ("openai_chat", "openai_responses", "anthropic")

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "refusal"]

JSON = Any


@dataclass(frozen=True)
class ToolCall:
    """A function/tool call the model makes. ``arguments`` is an object or a JSON string."""

    name: str
    arguments: Mapping[str, JSON] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))

    def arguments_object(self) -> JSON:
        if isinstance(self.arguments, str):
            return json.loads(self.arguments) if self.arguments else {}
        return dict(self.arguments)


@dataclass(frozen=True)
class Usage:
    """Usage overrides; ``None`` fields keep the computed figure."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error in the provider's own shape.

    ``type`` and ``message`` default per status and provider (OpenAI
    ``invalid_request_error``/``rate_limit_exceeded``..., Anthropic
    ``rate_limit_error``/``overloaded_error``...). ``body`` replaces the whole
    body verbatim (a dict is sent as JSON, a str as text).
    """

    status: int
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: JSON = None


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``text=None`` echoes the last user message unless ``tool_calls`` or
    ``refusal`` is given. Streaming pacing: ``chunks`` splits the text (and each
    tool call's arguments) into that many deltas, ``delay`` seconds pass before
    each delta, ``latency`` seconds before the response starts. ``fail_after=N``
    breaks a stream after N deltas: with ``fail_with`` the provider's in-stream
    error event is sent, else the connection is dropped (a non-streaming request
    is dropped, or answered with ``fail_with`` as an HTTP error).
    """

    text: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    refusal: str | None = None
    reasoning: str | None = None
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    error: ErrorReply | None = None
    chunks: int | None = None
    delay: float = 0.0
    latency: float = 0.0
    fail_after: int | None = None
    fail_with: ErrorReply | None = None
    model: str | None = None


Scriptable = Reply | ErrorReply | str


def as_reply(item: Scriptable) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, ErrorReply):
        return Reply(error=item)
    if isinstance(item, str):
        return Reply(text=item)
    raise TypeError(f"cannot script {type(item).__name__}; use Reply, ErrorReply or str")


@dataclass(frozen=True)
class ResolvedToolCall:
    call_id: str
    item_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Turn:
    """A reply resolved against one request: everything a renderer needs."""

    protocol: Protocol
    id: str
    model: str
    created: int
    text: str
    tool_calls: tuple[ResolvedToolCall, ...]
    refusal: str | None
    reasoning: str | None
    reasoning_id: str
    message_id: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int
    finish_reason: FinishReason
    chunks: int | None
    request: Mapping[str, JSON]

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def pieces(self, text: str) -> list[str]:
        """The deltas ``text`` streams as (words by default, ``chunks`` if set)."""
        return split_pieces(text, self.chunks)

    def argument_pieces(self, arguments: str) -> list[str]:
        if self.chunks is not None:
            return split_pieces(arguments, self.chunks)
        return split_pieces(arguments, max(2, math.ceil(len(arguments) / 12)))


_WORD = re.compile(r"\s*\S+|\s+")


def split_pieces(text: str, chunks: int | None) -> list[str]:
    """Split ``text`` into deltas: word-like pieces, or ``chunks`` near-equal ones.

    Never yields empty pieces, so a text shorter than ``chunks`` gives fewer.
    """
    if not text:
        return []
    if chunks is None:
        return _WORD.findall(text)
    n = max(1, min(chunks, len(text)))
    size, extra = divmod(len(text), n)
    out: list[str] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


@dataclass(frozen=True)
class Event:
    """One server-sent event; ``delta`` marks paced content deltas."""

    data: JSON
    event: str | None = None
    delta: bool = False


# ---------------------------------------------------------------- token figures


def count_text_tokens(text: str) -> int:
    """The fake's tokenizer: ceil(characters / 4)."""
    return (len(text) + 3) // 4


_STRUCTURAL_KEYS = frozenset(
    {"role", "type", "id", "call_id", "tool_call_id", "tool_use_id", "status", "cache_control"}
)


def _strings(value: JSON) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in _STRUCTURAL_KEYS:
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def default_prompt_tokens(protocol: Protocol | None, body: JSON) -> int:
    """Deterministic prompt tokens for a request body.

    ceil(chars/4) of every string under ``messages``/``input``/``system``/
    ``instructions`` (roles, types and ids excluded), plus 3 per message, plus
    ceil(chars/4) of the compact JSON of ``tools``, plus 3.
    """
    if not isinstance(body, Mapping):
        return 0
    total = 3
    for key in ("system", "instructions"):
        total += sum(count_text_tokens(s) for s in _strings(body.get(key)))
    for key in ("messages", "input"):
        items = body.get(key)
        if isinstance(items, str):
            total += 3 + count_text_tokens(items)
        elif isinstance(items, list):
            total += 3 * len(items)
            total += sum(count_text_tokens(s) for s in _strings(items))
    tools = body.get("tools")
    if tools:
        total += count_text_tokens(json.dumps(tools, separators=(",", ":")))
    return total


# ---------------------------------------------------------------- echo


def _text_of_content(content: JSON) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "tool_result":
                texts.append(_text_of_content(part.get("content")))
    return "".join(texts)


def last_user_text(protocol: Protocol, body: Mapping[str, JSON]) -> str:
    """Text of the last user message (``input`` for Responses, ``messages`` else)."""
    if protocol == "openai_responses":
        items = body.get("input")
        if isinstance(items, str):
            return items
        if not isinstance(items, list):
            return ""
        for item in reversed(items):
            if isinstance(item, Mapping) and item.get("role") == "user":
                return _text_of_content(item.get("content"))
            if isinstance(item, Mapping) and item.get("type") == "function_call_output":
                output = item.get("output")
                return output if isinstance(output, str) else _text_of_content(output)
        return ""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") in ("user", "tool"):
            return _text_of_content(message.get("content"))
    return ""


# ---------------------------------------------------------------- resolution


def resolve(
    reply: Reply,
    *,
    protocol: Protocol,
    body: Mapping[str, JSON],
    prompt_tokens: int,
    new_id: Callable[[str], str],
    created: int,
    echo_prefix: str,
) -> Turn:
    """Fill in a reply's defaults for one request."""
    if reply.text is not None:
        text = reply.text
    elif reply.tool_calls or reply.refusal is not None:
        text = ""
    else:
        text = echo_prefix + last_user_text(protocol, body)
    anthropic = protocol == "anthropic"
    calls = tuple(
        ResolvedToolCall(
            call_id=call.id or new_id("toolu_" if anthropic else "call_"),
            item_id=new_id("fc_"),
            name=call.name,
            arguments=call.arguments_json(),
        )
        for call in reply.tool_calls
    )
    if reply.finish_reason is not None:
        finish: FinishReason = reply.finish_reason
    elif calls:
        finish = "tool_calls"
    elif reply.refusal is not None and anthropic:
        finish = "refusal"
    else:
        finish = "stop"
    generated = text + (reply.refusal or "") + (reply.reasoning or "")
    generated += "".join(call.name + call.arguments for call in calls)
    usage = reply.usage or Usage()
    reasoning_tokens = usage.reasoning_tokens or (
        count_text_tokens(reply.reasoning) if reply.reasoning else 0
    )
    completion = usage.completion_tokens
    if completion is None:
        completion = max(1, count_text_tokens(generated))
    model = reply.model or str(body.get("model") or "fake-model")
    prefix = {"openai_chat": "chatcmpl-", "openai_responses": "resp_", "anthropic": "msg_"}
    return Turn(
        protocol=protocol,
        id=new_id(prefix[protocol]),
        model=model,
        created=created,
        text=text,
        tool_calls=calls,
        refusal=reply.refusal,
        reasoning=reply.reasoning,
        reasoning_id=new_id("rs_"),
        message_id=new_id("msg_"),
        prompt_tokens=usage.prompt_tokens if usage.prompt_tokens is not None else prompt_tokens,
        completion_tokens=completion,
        cached_tokens=usage.cached_tokens,
        cache_creation_tokens=usage.cache_creation_tokens,
        reasoning_tokens=reasoning_tokens,
        finish_reason=finish,
        chunks=reply.chunks,
        request=body,
    )
