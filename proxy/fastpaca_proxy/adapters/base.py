"""What the proxy needs to know about one wire format."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastpaca_core.formats import ChatInput
from fastpaca_core.jsonutil import dumps
from fastpaca_core.model import Message, StoredMessage

from ..sse import SSEEvent
from ..upstream import Provider

__all__ = ["Adapter", "Assembler", "Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


class Assembler(abc.ABC):
    """Reads a streamed reply event by event and builds the stored message."""

    complete = False  # the upstream finished the reply
    failed = False  # the upstream reported an error inside the stream

    @abc.abstractmethod
    def feed(self, event: SSEEvent) -> None: ...

    def end(self) -> None:  # noqa: B027 - optional hook, most formats end explicitly
        """The stream ended (the upstream closed it); decide whether it completed."""

    @abc.abstractmethod
    def reply(self) -> tuple[Message, Usage]:
        """The assembled reply; only valid once ``complete``."""


class Adapter(abc.ABC):
    """One wire format: how to read a request, rebuild it, and read the reply."""

    provider: Provider
    path: str  # the upstream path under the provider's base URL
    conversation_key = "messages"  # the body field that holds the conversation

    @abc.abstractmethod
    def split(self, body: Mapping[str, Any]) -> ChatInput:
        """The request's preamble (kept verbatim) and its conversation (ours)."""

    def resolve(
        self, messages: list[Message], log: Sequence[Message | StoredMessage]
    ) -> list[Message]:
        """Replace what the request only refers to by what the log holds."""
        return messages

    def unresolved(self, messages: Sequence[Message]) -> bool:
        """Whether ``messages`` (after ``resolve``) still refer to something
        the log given to ``resolve`` did not hold."""
        return False

    @abc.abstractmethod
    def build(
        self, body: Mapping[str, Any], preamble: list[dict[str, Any]], window: Sequence[Message]
    ) -> dict[str, Any]:
        """The upstream request: the client's body with the conversation replaced."""

    @abc.abstractmethod
    def reply(self, body: Mapping[str, Any]) -> tuple[Message, Usage]:
        """The stored reply and usage of a non-streamed response."""

    @abc.abstractmethod
    def assembler(self) -> Assembler: ...

    def prepare_stream(self, body: dict[str, Any]) -> bool:
        """Adjust a streaming request (ask for usage); True when the client must
        not see what was added."""
        return False

    def hide(self, event: SSEEvent) -> bool:
        """Whether an event exists only because ``prepare_stream`` asked for it."""
        return False

    @abc.abstractmethod
    def error_body(self, status: int, code: str, message: str) -> bytes:
        """An error (our ``status`` and machine ``code``) in this provider's own shape."""

    @staticmethod
    def is_stream(body: Mapping[str, Any]) -> bool:
        return body.get("stream") is True


# Our statuses as the providers' error types; a status not listed is a server error.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    **_OPENAI_TYPES,
    413: "request_too_large",
    503: "overloaded_error",
    504: "timeout_error",
}


def openai_error(status: int, code: str, message: str) -> bytes:
    """OpenAI's ``{"error": {message, type, param, code}}``; ``code`` is ours
    (``rate_limited``, ``payload_too_large``...)."""
    kind = _OPENAI_TYPES.get(status, "server_error")
    return dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def anthropic_error(status: int, code: str, message: str) -> bytes:
    """Anthropic's ``{"type": "error", "error": {type, message}}``."""
    kind = _ANTHROPIC_TYPES.get(status, "api_error")
    return dumps({"type": "error", "error": {"type": kind, "message": message}})
