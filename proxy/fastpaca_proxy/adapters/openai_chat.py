"""OpenAI Chat Completions: ``POST .../chat/completions``.

Legacy ``function`` messages that a client sends without the
``function_call`` they answer (it sends only its newest message) are paired
with that call in the log before alignment (``resolve_function_results``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastpaca_core.errors import ValidationError
from fastpaca_core.formats import (
    ChatInput,
    from_openai_chat,
    has_unpaired,
    reply_from_chat_completion,
    resolve_function_results,
    to_openai_chat,
)
from fastpaca_core.jsonutil import JSONError, loads
from fastpaca_core.model import Message, StoredMessage

from ..sse import SSEEvent
from .base import Adapter, Assembler, Usage, keep_sent, openai_error

__all__ = ["OpenAIChat"]

_PREAMBLE = frozenset({"system", "developer"})


def _apart(message: Any) -> bool:
    """A preamble message (``from_openai_chat`` keeps them out of the conversation)."""
    return isinstance(message, dict) and message.get("role") in _PREAMBLE


def _sized(body: Mapping[str, Any], several: bool = False) -> tuple[Message, Usage]:
    """``choices[0]`` as the reply, with the upstream's figures. The reply's
    count leaves out a reasoning model's hidden reasoning (billed in
    ``completion_tokens``, never sent again) unless the reply holds it
    (see ``_reasoning``); with ``several`` choices (``n > 1``), whose
    tokens ``completion_tokens`` adds up, it is ours."""
    reply = reply_from_chat_completion(body)
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return reply, Usage(None, None)
    completion = _count(usage.get("completion_tokens"))
    details = usage.get("completion_tokens_details")
    hidden = _count(details.get("reasoning_tokens")) if isinstance(details, Mapping) else None
    if several:
        completion = None
    elif completion is not None and hidden and not _reasoning(reply):
        completion = max(completion - hidden, 0)
    if reply.token_count != completion:
        reply = reply.with_tokens(completion)
    return reply, Usage(usage.get("prompt_tokens"), completion)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reasoning(reply: Message) -> bool:
    """Whether the reply holds its reasoning, sent again with it: a
    ``reasoning_content`` part, or a provider's own key (OpenRouter's
    ``reasoning`` / ``reasoning_details``) kept with the message."""
    if any(part.get("type") == "reasoning" for part in reply.parts):
        return True
    holder = reply.metadata.get("providerMetadata")
    openai = holder.get("openai") if isinstance(holder, Mapping) else None
    chat = openai.get("chat") if isinstance(openai, Mapping) else None
    return isinstance(chat, Mapping) and any(key.startswith("reasoning") for key in chat)


_IDENTITY = frozenset({"id", "type"})  # a streamed object's keys that are never pieces


def _merged(before: Any, value: Any) -> Any:
    """A streamed value after one more delta: strings are pieces to join,
    objects merge key by key, lists gather their items (an item with an
    ``index`` merges into the one with the same index); anything else replaces."""
    if isinstance(before, str) and isinstance(value, str):
        return before + value
    if isinstance(before, dict) and isinstance(value, dict):
        _merge(before, value)
        return before
    if isinstance(before, list) and isinstance(value, list):
        for item in value:
            index = item.get("index") if isinstance(item, dict) else None
            same = [
                old
                for old in before
                if index is not None and isinstance(old, dict) and old.get("index") == index
            ]
            if same:
                _merge(same[0], item)
            else:
                before.append(dict(item) if isinstance(item, dict) else item)
        return before
    return dict(value) if isinstance(value, dict) else value


def _merge(into: dict[str, Any], delta: Mapping[str, Any]) -> None:
    for key, value in delta.items():
        if value is None:
            continue
        into[key] = value if key in _IDENTITY else _merged(into.get(key), value)


def _complete(call: dict[str, Any]) -> dict[str, Any]:
    """A streamed tool call with the fields a call always has."""
    if call["type"] == "function":
        call["function"] = {"name": "", "arguments": "", **call.get("function", {})}
    return call


_SINKS = ("content", "refusal", "reasoning_content")
# what a reply without text holds instead (its ``content`` is then null)
_INSTEAD_OF_TEXT = frozenset({"audio", "function_call"})


class _ChatAssembler(Assembler):
    def __init__(self) -> None:
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.pieces: dict[str, Any] = {}  # the message's other keys, deltas merged
        self.several = False  # n > 1: usage counts every choice

    def feed(self, event: SSEEvent) -> None:
        if event.data == "[DONE]":
            self.complete = True
            return
        try:
            chunk = loads(event.data)
        except JSONError:
            return
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            self.failed = True
            return
        self.model = chunk.get("model") or self.model
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                self.several = True
                continue  # n > 1: the first choice is the one stored
            delta = choice.get("delta") or {}
            for key, value in delta.items():
                if key == "content":  # the common case
                    if isinstance(value, str):
                        self.text.append(value)
                elif key == "tool_calls":
                    for call in value or ():
                        self._call(call)
                elif key in _SINKS:
                    if isinstance(value, str):
                        (self.refusal if key == "refusal" else self.reasoning).append(value)
                elif key != "role" and value is not None:
                    # audio, a legacy function_call, a provider's own (reasoning_details...):
                    # kept as a non-streamed reply keeps them
                    self.pieces[key] = _merged(self.pieces.get(key), value)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _call(self, call: Mapping[str, Any]) -> None:
        index = call.get("index")
        if index is None:  # Gemini's OpenAI-compatible streams give none
            index = self._unnumbered(call.get("id"))
        entry = self.calls.setdefault(int(index), {"id": "", "type": "function"})
        _merge(entry, {k: v for k, v in call.items() if k != "index" and (k != "id" or v)})

    def _unnumbered(self, call_id: Any) -> int:
        """The index of a call delta without one: a new id starts the next
        call; a delta without an id (or with the same) continues the latest."""
        if not self.calls:
            return 0
        latest = max(self.calls)
        known = self.calls[latest].get("id")
        if isinstance(call_id, str) and call_id and known and call_id != known:
            return latest + 1
        return latest

    def end(self) -> None:
        if self.finish_reason is not None and not self.failed:
            self.complete = True

    def reply(self) -> tuple[Message, Usage]:
        text = "".join(self.text)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if self.text and not (self.refusal or self.calls or _INSTEAD_OF_TEXT & self.pieces.keys()):
            # an empty answer (max_completion_tokens spent on reasoning): ``""``
            # as a non-streamed reply has it, so the turn is kept
            message["content"] = text
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        message.update(self.pieces)  # audio (id, transcript...), a legacy function_call...
        if self.calls:
            message["tool_calls"] = [_complete(self.calls[i]) for i in sorted(self.calls)]
        body = {
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }
        return _sized(body, self.several)


class OpenAIChat(Adapter):
    provider = "openai"
    path = "chat/completions"

    def split(self, body: Mapping[str, Any]) -> ChatInput:
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ValidationError("messages", "must be a list of message objects")
        return from_openai_chat(messages)

    def resolve(
        self, messages: list[Message], log: Sequence[Message | StoredMessage]
    ) -> list[Message]:
        """Legacy ``function`` messages sent without their call -> paired with it."""
        if not has_unpaired(messages):
            return messages
        return resolve_function_results(messages, log)

    def unresolved(self, messages: Sequence[Message]) -> bool:
        return has_unpaired(messages)

    def build(
        self, body: Mapping[str, Any], preamble: list[dict[str, Any]], window: Sequence[Message]
    ) -> dict[str, Any]:
        messages = to_openai_chat(window)
        sent = body.get("messages")
        own, start, interleaved = keep_sent(messages, sent, _apart)
        if not interleaved:
            return {**body, "messages": [*preamble, *messages]}
        # the client's own messages as sent, system / developer messages among
        # them in their places; the preamble before them leads
        assert isinstance(sent, list)
        head = [m for m in sent[:start] if _apart(m)]
        return {**body, "messages": [*head, *messages[: len(messages) - own], *sent[start:]]}

    def reply(self, body: Mapping[str, Any]) -> tuple[Message, Usage]:
        choices = body.get("choices")
        return _sized(body, isinstance(choices, list) and len(choices) > 1)

    def assembler(self) -> Assembler:
        return _ChatAssembler()

    @staticmethod
    def is_stream(body: Mapping[str, Any]) -> bool:
        stream = body.get("stream") is True
        if stream and not isinstance(body.get("stream_options"), dict | None):
            raise ValidationError("stream_options", "must be an object")
        return stream

    def prepare_stream(self, body: dict[str, Any]) -> bool:
        options = body.get("stream_options")  # an object or absent (is_stream)
        if isinstance(options, dict) and options.get("include_usage"):
            return False
        body["stream_options"] = {**(options or {}), "include_usage": True}
        return True

    def hide(self, event: SSEEvent) -> bool:
        if '"usage"' not in event.data:
            return False
        try:
            chunk = loads(event.data)
        except JSONError:
            return False
        return isinstance(chunk, dict) and chunk.get("choices") == [] and bool(chunk.get("usage"))

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return openai_error(status, code, message)
