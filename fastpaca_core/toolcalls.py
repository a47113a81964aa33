"""Tool calls and their results, in the stored (ai-sdk UIMessage) shape.

- a call: a part ``tool-<name>`` or ``dynamic-tool`` with a ``toolCallId`` in
  state ``input-streaming`` / ``input-available``;
- a result: a part ``tool-result`` with the ``toolCallId`` it answers;
- a part in state ``output-available`` / ``output-error`` holds call and
  result together and pairs with nothing else.
"""

from __future__ import annotations

from typing import Any

from .model import Message

__all__ = ["RESULT_TYPE", "is_call_part", "part_call_id", "tool_refs"]

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


def tool_refs(message: Message) -> tuple[set[str], set[str]]:
    """The ids of the open calls a message makes and the results it holds."""
    calls: set[str] = set()
    results: set[str] = set()
    for part in message.parts:
        call_id = part_call_id(part)
        if call_id is None:
            continue
        if part.get("type") == RESULT_TYPE:
            results.add(call_id)
        elif is_call_part(part) and part.get("state") not in _SETTLED:
            calls.add(call_id)
    return calls, results
