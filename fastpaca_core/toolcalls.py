"""Tool calls and their results, in the stored (ai-sdk UIMessage) shape.

- a call: a part ``tool-<name>`` or ``dynamic-tool`` with a ``toolCallId`` in
  state ``input-streaming`` / ``input-available``;
- a result: a part ``tool-result`` with the ``toolCallId`` it answers;
- a part in state ``output-available`` / ``output-error`` holds call and
  result together and pairs with nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .model import Message

__all__ = ["RESULT_TYPE", "is_call_part", "part_call_id", "parts_refs", "tool_refs"]

RESULT_TYPE = "tool-result"
_SETTLED = frozenset({"output-available", "output-error", "output-denied"})


def part_call_id(part: dict[str, Any]) -> str | None:
    value = part.get("toolCallId")
    return value if isinstance(value, str) else None


def is_call_part(part: dict[str, Any]) -> bool:
    kind = part.get("type", "")
    if kind == RESULT_TYPE:
        return False
    return isinstance(kind, str) and (kind.startswith("tool-") or kind == "dynamic-tool")


_NO_IDS: frozenset[str] = frozenset()


def parts_refs(parts: Sequence[dict[str, Any]]) -> tuple[frozenset[str], frozenset[str]]:
    """The ids of the open calls some parts make and of the results they hold."""
    calls: set[str] | None = None
    results: set[str] | None = None
    for part in parts:
        call_id = part.get("toolCallId")
        if not isinstance(call_id, str):
            continue  # most parts (text, files): no set is built for them
        if part.get("type") == RESULT_TYPE:
            results = results or set()
            results.add(call_id)
        elif is_call_part(part) and part.get("state") not in _SETTLED:
            calls = calls or set()
            calls.add(call_id)
    return (
        _NO_IDS if calls is None else frozenset(calls),
        _NO_IDS if results is None else frozenset(results),
    )


def tool_refs(message: Message) -> tuple[frozenset[str], frozenset[str]]:
    """The ids of the open calls a message makes and the results it holds."""
    return parts_refs(message.parts)
