"""What of a window can be sent to a provider: without the tool calls the
conversation went past (:func:`sendable`). The proxy sends a window so, and
``GET /v1/contexts/{id}/context?format=`` converts it so, since its
``messages`` are meant to be handed to a provider's SDK as they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .model import Message
from .toolcalls import OPENAI_ITEM_TYPE, is_result_part, part_call_id, tool_refs

__all__ = ["sendable"]

# parts that say nothing without the call they came with (a reasoning item or
# a thinking block alone makes an assistant turn the providers refuse)
_BARE = frozenset({"reasoning", "step-start"})


def _first_call(window: Sequence[Message], end: int) -> int | None:
    """The index of the first assistant message before ``end`` with a part
    that may be a tool call (most windows have none: a quick look, no ids)."""
    for index in range(end):
        message = window[index]
        if message.role == "assistant":
            for part in message.parts:
                if "toolCallId" in part or part.get("type") == OPENAI_ITEM_TYPE:
                    return index
    return None


def sendable(window: Sequence[Message]) -> Sequence[Message]:
    """The window's messages to send: without the tool calls that no later
    message answers, but for those of its last message (``window`` itself
    when there are none).

    Such a call was left unanswered and the conversation went on past it: a
    reply by function calling no one ran (``with_structured_output``), an
    agent stopped halfway. The log keeps it, and the window may too (a
    compaction does not take away a call still waiting for its result), but
    every provider refuses a call not followed by its result (OpenAI Chat and
    Responses, Anthropic: 400), so the upstream gets the turn without it; an
    assistant message left with nothing to say (only the call, or reasoning
    before it) is left out.
    """
    last = len(window) - 1
    first = _first_call(window, last)
    if first is None:
        return window
    answered: set[str] = set()
    dropped: dict[int, frozenset[str]] = {}
    for index in range(last, first - 1, -1):
        calls, results = tool_refs(window[index])
        if calls and index < last:
            open_calls = calls - answered
            if open_calls:
                dropped[index] = open_calls
        if results:
            answered |= results
    if not dropped:
        return window
    out: list[Message] = []
    for index, message in enumerate(window):
        ids = dropped.get(index)
        if ids is None:
            out.append(message)
            continue
        parts = [p for p in message.parts if is_result_part(p) or part_call_id(p) not in ids]
        if any(p.get("type") not in _BARE for p in parts):
            out.append(replace(message, parts=parts))
    return out
