"""OpenAI Chat Completions: ``POST .../chat/completions``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastpaca_core.errors import ValidationError
from fastpaca_core.formats import (
    ChatInput,
    from_openai_chat,
    reply_from_chat_completion,
    to_openai_chat,
)
from fastpaca_core.jsonutil import JSONError, loads
from fastpaca_core.model import Message

from ..sse import SSEEvent
from .base import Adapter, Assembler, Usage, openai_error

__all__ = ["OpenAIChat"]


def _usage(body: Mapping[str, Any]) -> Usage:
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return Usage(None, None)
    return Usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))


class _ChatAssembler(Assembler):
    def __init__(self) -> None:
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None

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
                continue  # n > 1: the first choice is the one stored
            delta = choice.get("delta") or {}
            for key, sink in (
                ("content", self.text),
                ("refusal", self.refusal),
                ("reasoning_content", self.reasoning),
            ):
                if isinstance(delta.get(key), str):
                    sink.append(delta[key])
            for call in delta.get("tool_calls") or []:
                entry = self.calls.setdefault(
                    int(call.get("index", 0)),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if call.get("id"):
                    entry["id"] = call["id"]
                function = call.get("function") or {}
                entry["function"]["name"] += function.get("name") or ""
                entry["function"]["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def end(self) -> None:
        if self.finish_reason is not None and not self.failed:
            self.complete = True

    def reply(self) -> tuple[Message, Usage]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None}
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        body = {
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }
        return reply_from_chat_completion(body), _usage(body)


class OpenAIChat(Adapter):
    provider = "openai"
    path = "chat/completions"

    def split(self, body: Mapping[str, Any]) -> ChatInput:
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ValidationError("messages", "must be a list of message objects")
        return from_openai_chat(messages)

    def build(
        self, body: Mapping[str, Any], preamble: list[dict[str, Any]], window: Sequence[Message]
    ) -> dict[str, Any]:
        return {**body, "messages": [*preamble, *to_openai_chat(window)]}

    def reply(self, body: Mapping[str, Any]) -> tuple[Message, Usage]:
        return reply_from_chat_completion(body), _usage(body)

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
