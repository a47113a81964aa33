"""OpenAI Responses: ``POST .../responses``.

With a context, ``previous_response_id`` is dropped: the conversation comes
from the log, so the upstream must not add its own stored copy of it (the
system / developer items of its chain are carried over by the proxy instead,
see ``preambles``). For the
same reason a ``conversation`` is refused (400), as is ``background: true``
(its reply comes later, by polling, where the proxy cannot store it). Items a
client sends only by reference (``item_reference``, ai-sdk's default when the
upstream stores responses) are resolved against the log before alignment.

With ``store: false`` the upstream keeps nothing, so a reasoning item from the
log without its ``encrypted_content`` (the client did not ask for
``include: ["reasoning.encrypted_content"]``) names an item it cannot find
(OpenAI answers 404): such items are left out, as ai-sdk leaves them out. The
log keeps them, and the client's own items go as it sent them.

A call of a stored prompt template (``prompt``) holding no conversation
message (no ``input``, or only system / developer items) has no turn to store
nor to put the context before: the template, which the upstream fills in, is
its whole prompt, as ``instructions`` would be. It goes upstream as sent, the
context playing no part (:meth:`OpenAIResponses.passes_through`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastpaca_core.errors import ValidationError
from fastpaca_core.formats import (
    ChatInput,
    from_responses_input,
    reply_from_response,
    resolve_item_references,
    to_responses_input,
)
from fastpaca_core.formats.openai_responses import RAW_ITEM
from fastpaca_core.jsonutil import JSONError, loads
from fastpaca_core.model import Message, StoredMessage

from ..sse import SSEEvent
from .base import Adapter, Assembler, Usage, keep_sent, openai_error

__all__ = ["OpenAIResponses"]

_DONE = frozenset({"response.completed", "response.incomplete"})
_FAILED = frozenset({"response.failed", "error"})
_PREAMBLE = frozenset({"system", "developer"})


def _apart(item: Any) -> bool:
    """A preamble item (``from_responses_input`` keeps them out of the conversation)."""
    role = item.get("role") if isinstance(item, dict) else None
    if not isinstance(role, str) or role not in _PREAMBLE:  # an odd role (a list...) is not
        return False
    return bool(item.get("type", "message") == "message")


def _unfindable(item: dict[str, Any]) -> bool:
    """A reasoning item the upstream can only find by its id (it carries
    neither ``encrypted_content`` nor its reasoning ``content``), which a call
    with ``store: false`` cannot."""
    return (
        item.get("type") == "reasoning"
        and item.get("encrypted_content") is None
        and not item.get("content")
    )


def _usage(body: Mapping[str, Any]) -> Usage:
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return Usage(None, None)
    return Usage(usage.get("input_tokens"), usage.get("output_tokens"))


class _ResponsesAssembler(Assembler):
    def __init__(self) -> None:
        self.response: dict[str, Any] | None = None

    def feed(self, event: SSEEvent) -> None:
        try:
            data = loads(event.data)
        except JSONError:
            return
        if not isinstance(data, dict):
            return
        kind = data.get("type") or event.event
        if self.reply_id is None and isinstance(data.get("response"), dict):
            reply_id = data["response"].get("id")  # (response.created: the first event)
            self.reply_id = reply_id if isinstance(reply_id, str) else None
        if kind in _DONE and isinstance(data.get("response"), dict):
            self.response = data["response"]
            self.complete = True
        elif kind in _FAILED:
            self.failed = True

    def reply(self) -> tuple[Message, Usage]:
        assert self.response is not None
        return reply_from_response(self.response), _usage(self.response)


class OpenAIResponses(Adapter):
    provider = "openai"
    path = "responses"
    conversation_key = "input"
    chains = True  # previous_response_id

    def split(self, body: Mapping[str, Any]) -> ChatInput:
        # with a context (the only case that splits), the log holds the conversation
        if body.get("conversation") is not None:
            raise ValidationError(
                "conversation",
                "cannot be combined with a Fastpaca context, which holds the conversation "
                "itself (the upstream would add its copy of it); leave it out, or call "
                "without a context",
            )
        if body.get("background") is True:
            raise ValidationError(
                "background",
                "is not supported with a Fastpaca context: the reply would not be stored; "
                "call without a context",
            )
        items = body.get("input")
        if isinstance(items, str):
            return from_responses_input(items)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ValidationError("input", "must be a string or a list of input items")
        return from_responses_input(items)

    def passes_through(self, body: Mapping[str, Any]) -> bool:
        """Whether the request goes upstream as sent, the context neither read
        nor changed: a ``prompt`` template call with no conversation message."""
        if body.get("prompt") is None:  # the common case: one look
            return False
        items = body.get("input")
        return items is None or (isinstance(items, list) and all(map(_apart, items)))

    def resolve(
        self, messages: list[Message], log: Sequence[Message | StoredMessage]
    ) -> list[Message]:
        """``item_reference`` items (sent when the upstream stores responses) -> the items."""
        if not self.unresolved(messages):
            return messages
        return resolve_item_references(messages, log)

    def unresolved(self, messages: Sequence[Message]) -> bool:
        return any(
            part.get("type") == RAW_ITEM
            and isinstance(part.get("data"), Mapping)
            and part["data"].get("type") == "item_reference"
            for message in messages
            for part in message.parts
        )

    def build(
        self, body: Mapping[str, Any], preamble: list[dict[str, Any]], window: Sequence[Message]
    ) -> dict[str, Any]:
        out = {k: v for k, v in body.items() if k != "previous_response_id"}
        items = to_responses_input(window)
        sent = body.get("input")
        own, start, interleaved = keep_sent(items, sent, _apart)
        logged = len(items) - own  # the items from the log come first
        if body.get("store") is False:  # the upstream keeps nothing to find by id
            kept = [item for item in items[:logged] if not _unfindable(item)]
            items, logged = [*kept, *items[logged:]], len(kept)
        if not interleaved:
            out["input"] = [*preamble, *items]
            return out
        # the client's own items as sent, system / developer messages among
        # them in their places; the preamble before them leads
        assert isinstance(sent, list)
        head = [item for item in sent[:start] if _apart(item)]
        out["input"] = [*head, *items[:logged], *sent[start:]]
        return out

    def reply(self, body: Mapping[str, Any]) -> tuple[Message, Usage]:
        return reply_from_response(body), _usage(body)

    def continues(self, body: Mapping[str, Any]) -> Any:
        return body.get("previous_response_id")

    def reply_id(self, body: Mapping[str, Any]) -> Any:
        return body.get("id")

    def assembler(self) -> Assembler:
        return _ResponsesAssembler()

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return openai_error(status, code, message)
