"""What the proxy needs to know about one wire format."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastpaca_core.formats import ChatInput
from fastpaca_core.jsonutil import dumps
from fastpaca_core.model import Message, StoredMessage
from fastpaca_core.sendable import sendable

from ..sse import SSEEvent
from ..upstream import Provider

__all__ = ["Adapter", "Assembler", "Usage", "keep_sent", "sendable"]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


class Assembler(abc.ABC):
    """Reads a streamed reply event by event and builds the stored message."""

    complete = False  # the upstream finished the reply
    failed = False  # the upstream reported an error inside the stream
    reply_id: str | None = None  # the reply's id, once seen (an ``Adapter.chains`` format's)

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
    # whether a request may continue an earlier reply by its id, inheriting the
    # preamble it was sent with (``preambles``): ``continues``, ``reply_id``
    chains = False

    @abc.abstractmethod
    def split(self, body: Mapping[str, Any]) -> ChatInput:
        """The request's preamble (kept verbatim) and its conversation (ours)."""

    def passes_through(self, body: Mapping[str, Any]) -> bool:
        """Whether a request with a context still goes upstream as sent, the
        context neither read nor changed: it holds no conversation to keep."""
        return False

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

    def continues(self, body: Mapping[str, Any]) -> Any:
        """The id of the earlier reply a request continues (a ``chains`` format's)."""
        return None

    def reply_id(self, body: Mapping[str, Any]) -> Any:
        """The id of a non-streamed response (a ``chains`` format's)."""
        return None

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


# -- the client's own messages ------------------------------------------------

_BREAKPOINT = "cache_control"


def _without_breakpoints(block: Any) -> Any:
    """A content block without its ``cache_control`` (nor those of the blocks of
    a tool result's content)."""
    if not isinstance(block, dict):
        return block
    out = {k: v for k, v in block.items() if k != _BREAKPOINT}
    nested = out.get("content")
    if isinstance(nested, list):
        out["content"] = [_without_breakpoints(b) for b in nested]
    return out


def _blocks(content: Any) -> list[Any] | None:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else None


def _same_content(ours: Any, theirs: Any) -> bool:
    """Equal contents but for cache breakpoints and one text given as a string
    or as one text block."""
    mine, yours = _blocks(ours), _blocks(theirs)
    if mine is None or yours is None or len(mine) != len(yours):
        return False
    return all(
        a == b or _without_breakpoints(a) == _without_breakpoints(b)
        for a, b in zip(mine, yours, strict=True)
    )


def _same_message(built: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
    """Whether ``sent`` is the message ``built`` was rebuilt from: every key
    ``built`` has, with its value (the content but for what ``_same_content``
    allows). ``sent`` may have more (``null``s, keys the log does not send
    back, such as Chat's ``annotations``)."""
    for key, value in built.items():
        theirs = sent.get(key)
        if theirs != value and (key != "content" or not _same_content(value, theirs)):
            return False
    return True


def keep_sent(
    built: list[dict[str, Any]],
    sent: Any,
    apart: Callable[[Any], bool] | None = None,
) -> tuple[int, int, bool]:
    """Put the client's own messages back at the end of ``built`` (the
    conversation rebuilt from the log and the new turn).

    Walking back from the end, each built message that is the request's
    message at the same place from its end (``sent``; its messages ``apart``
    says the conversation does not hold, system prompts, passed over) is
    replaced by the request's, as sent: the log cannot tell where the client
    has its cache breakpoints now, nor keys it keeps but does not send back.
    The first one that is not ends the walk; older messages are the log's.

    Returns how many of ``built``'s last messages are the client's; where in
    ``sent`` the messages they are begin (``len(sent)`` when none); and
    whether messages ``apart`` were passed over among them (else the request
    from there is those messages, as sent). A resent history equal to the
    window is settled by one C-level list comparison; otherwise one pass of
    comparisons over the messages both hold.
    """
    if not isinstance(sent, list):
        return 0, 0, False
    size = len(built)
    if 0 < size <= len(sent) and sent[-size:] == built:
        return size, len(sent) - size, False  # the common case: nothing to replace
    index, count, start = len(sent) - 1, 0, len(sent)
    passed = inside = 0  # apart messages passed over since the last match; among the matched
    for position in range(size - 1, -1, -1):
        while index >= 0 and apart is not None and apart(sent[index]):
            index -= 1
            passed += 1
        if index < 0:
            break
        ours, theirs = built[position], sent[index]
        if ours != theirs:
            if not isinstance(theirs, dict) or not _same_message(ours, theirs):
                break
            built[position] = theirs
        start, inside, passed = index, inside + passed, 0
        index -= 1
        count += 1
    return count, start, inside > 0
