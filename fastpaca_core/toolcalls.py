"""Tool calls and their results, in the stored (ai-sdk UIMessage) shape.

- a call: a part ``tool-<name>`` or ``dynamic-tool`` with a ``toolCallId`` in
  state ``input-streaming`` / ``input-available``;
- a result: a part ``tool-result`` with the ``toolCallId`` it answers;
- a part in state ``output-available`` / ``output-error`` holds call and
  result together and pairs with nothing else;
- an OpenAI Responses item kept verbatim (a ``data-openai-item`` part) is a
  call when a separate item answers it (``computer_call``,
  ``local_shell_call``, ``shell_call``, ``apply_patch_call``,
  ``mcp_approval_request``, ``tool_search_call``, ``program``,
  an unreadable ``function_call``...), and a result when it is that answer
  (``computer_call_output``, ``mcp_approval_response``...), keyed by the id
  that links the two (``call_id``; the request's ``id``, which the response
  names as ``approval_request_id``). Other items (reasoning, messages,
  ``web_search_call``, ``mcp_call``...) answer nothing and are never answered.

A call answered later in the same message (a hosted tool's call and output in
one reply) is settled there, as a settled part is: neither counts, so the
pair is neither an open call nor an orphan result.

:func:`part_call_id` is the id by which any of these pairs (``toolCallId``
or the link id); :func:`is_call_part` stays true of ``tool-<name>`` /
``dynamic-tool`` parts only (the format converters read a call's name from
the type), and :func:`is_result_part` is true of every result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .model import Message

__all__ = [
    "OPENAI_ITEM_TYPE",
    "RESULT_TYPE",
    "call_name",
    "is_call_part",
    "is_result_part",
    "part_call_id",
    "parts_refs",
    "text_may_refer",
    "tool_refs",
]

RESULT_TYPE = "tool-result"
OPENAI_ITEM_TYPE = "data-openai-item"
_SETTLED = frozenset({"output-available", "output-error", "output-denied"})

# Responses items answered by another item: type -> the key holding the link id.
# (The openai SDK's ResponseInputItem / ResponseOutputItem types.)
_ITEM_CALLS: dict[str, str] = {
    "computer_call": "call_id",
    "local_shell_call": "call_id",
    "shell_call": "call_id",
    "apply_patch_call": "call_id",
    "mcp_approval_request": "id",
    "tool_search_call": "call_id",  # optional: a call without one pairs with nothing
    "program": "call_id",
    "function_call": "call_id",  # kept verbatim only when unreadable
    "custom_tool_call": "call_id",
}
# The answers: type -> the keys that may hold the link id, first found wins.
_ITEM_RESULTS: dict[str, tuple[str, ...]] = {
    "computer_call_output": ("call_id",),
    # the SDK types name the call's call_id ``id``; OpenAI's guide sends ``call_id``
    "local_shell_call_output": ("call_id", "id"),
    "shell_call_output": ("call_id",),
    "apply_patch_call_output": ("call_id",),
    "mcp_approval_response": ("approval_request_id",),
    "tool_search_output": ("call_id",),
    "program_output": ("call_id",),
    "function_call_output": ("call_id",),
    "custom_tool_call_output": ("call_id",),
}


_ITEM_LINKS: dict[str, tuple[bool, tuple[str, ...]]] = {
    **{kind: (True, (key,)) for kind, key in _ITEM_CALLS.items()},
    **{kind: (False, keys) for kind, keys in _ITEM_RESULTS.items()},
}


def _item_ref(part: dict[str, Any]) -> tuple[bool, str] | None:
    """``(is_call, link id)`` of a ``data-openai-item`` part that is half of a pair."""
    item = part.get("data")
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    link = _ITEM_LINKS.get(kind) if isinstance(kind, str) else None
    if link is None:
        return None
    is_call, keys = link
    for key in keys:
        value = item.get(key)
        if isinstance(value, str):
            return (is_call, value)
    return None


def part_call_id(part: dict[str, Any]) -> str | None:
    """The id by which a part pairs with a call or a result: a ``toolCallId``,
    or the link id of a Responses call item or its answer; else None."""
    value = part.get("toolCallId")
    if isinstance(value, str):
        return value
    if part.get("type") == OPENAI_ITEM_TYPE:
        ref = _item_ref(part)
        return None if ref is None else ref[1]
    return None


def is_call_part(part: dict[str, Any]) -> bool:
    """An ai-sdk tool part (``tool-<name>`` / ``dynamic-tool``), settled or not."""
    kind = part.get("type", "")
    if kind == RESULT_TYPE:
        return False
    return isinstance(kind, str) and (kind.startswith("tool-") or kind == "dynamic-tool")


def call_name(part: dict[str, Any]) -> str | None:
    """The tool a call part names: its type after ``tool-``, or a
    ``dynamic-tool``'s ``toolName``; None when that is not a string."""
    kind = str(part.get("type", ""))
    name = part.get("toolName") if kind == "dynamic-tool" else kind[len("tool-") :]
    return name if isinstance(name, str) else None


def is_result_part(part: dict[str, Any]) -> bool:
    """A part that answers a call made elsewhere: a ``tool-result`` part with its
    ``toolCallId``, or a Responses item answering another (``computer_call_output``...)."""
    kind = part.get("type")
    if kind == RESULT_TYPE:
        return isinstance(part.get("toolCallId"), str)
    if kind == OPENAI_ITEM_TYPE:
        ref = _item_ref(part)
        return ref is not None and not ref[0]
    return False


def text_may_refer(text: str) -> bool:
    """False only if parts stored as this JSON text certainly hold no call or result."""
    return "toolCallId" in text or OPENAI_ITEM_TYPE in text


_NO_IDS: frozenset[str] = frozenset()


def parts_refs(parts: Sequence[dict[str, Any]]) -> tuple[frozenset[str], frozenset[str]]:
    """The ids of the open calls some parts make and of the results they hold."""
    calls: set[str] | None = None
    results: set[str] | None = None
    for part in parts:
        call_id = part.get("toolCallId")
        if isinstance(call_id, str):
            if part.get("type") == RESULT_TYPE:
                is_call = False
            elif is_call_part(part) and part.get("state") not in _SETTLED:
                is_call = True
            else:
                continue
        elif "data" in part and part.get("type") == OPENAI_ITEM_TYPE:
            ref = _item_ref(part)
            if ref is None:
                continue
            is_call, call_id = ref
        else:
            continue  # most parts (text, files): no set is built for them
        if is_call:
            calls = calls or set()
            calls.add(call_id)
        elif calls is not None and call_id in calls:
            calls.discard(call_id)  # answered in these parts: settled, pairs with nothing
        else:
            results = results or set()
            results.add(call_id)
    return (
        _NO_IDS if calls is None else frozenset(calls),
        _NO_IDS if results is None else frozenset(results),
    )


def tool_refs(message: Message) -> tuple[frozenset[str], frozenset[str]]:
    """The ids of the open calls a message makes and the results it holds."""
    return parts_refs(message.parts)
