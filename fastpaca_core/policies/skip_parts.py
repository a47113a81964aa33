"""``skip_parts {limit, skip_kinds?}``: drop bulky parts, then ``last_n``.

Parts whose type starts with one of ``skip_kinds`` (default ``tool`` and
``reasoning``) are dropped, and messages left empty with them. The turn in
flight (everything after the newest user message, or the whole window when
an earlier cut took that message away) is left whole, and so are the newest
message with the calls and results it pairs with, and every call still
waiting for its result: an agent loop never loses the call or the result it
is about to answer. A call whose result is dropped loses its call too, and
the reverse: tool pairs are never split. The system messages at the front of
the window, which a cut pins, are kept whole, whatever their parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ValidationError
from ..model import ContextRecord, Message
from ..toolcalls import RESULT_TYPE, part_call_id
from ..window import WindowItem, pinned_count, valid_cuts
from .base import cut, due, positive_int
from .open_calls import open_calls

__all__ = ["SkipParts"]

DEFAULT_SKIP_KINDS = ["tool", "reasoning"]


def _is_request(item: WindowItem) -> bool:
    """A user message that asks something: not one made only of tool results."""
    if item.role != "user":
        return False
    return any(part.get("type") != RESULT_TYPE for part in item.message.parts)


def _in_flight(items: Sequence[WindowItem]) -> int:
    """Where the turn in flight starts: after the newest user request, or at the
    start when the window holds none (an earlier cut took it away: everything
    left is its turn). The newest message is always in it, and the start moves
    earlier while a call/result pair would straddle it."""
    n = len(items)
    start = 0
    for index in range(n - 1, -1, -1):
        if _is_request(items[index]):
            start = index + 1
            break
    start = min(start, max(n - 1, 0))
    cuts = valid_cuts(items)
    while start > 0 and not cuts[start]:
        start -= 1
    return start


class SkipParts:
    name = "skip_parts"
    compacts = True

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        kinds = config.get("skip_kinds", DEFAULT_SKIP_KINDS)
        if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds):
            raise ValidationError("policy.config.skip_kinds", "must be a list of non-empty strings")
        return {**config, "limit": positive_int(config, "limit", 200), "skip_kinds": kinds}

    def should_run(self, ctx: ContextRecord, config: Mapping[str, Any]) -> bool:
        return due(ctx, config["limit"])

    def compact(
        self, items: Sequence[WindowItem], ctx: ContextRecord, config: Mapping[str, Any]
    ) -> list[WindowItem]:
        kinds = tuple(config["skip_kinds"])
        in_flight = _in_flight(items)
        # the pinned system messages are kept as they are, whatever their parts
        lead = pinned_count(items, in_flight)
        older, current = items[lead:in_flight], items[in_flight:]
        waiting = open_calls(items)  # calls with no result yet: never skipped

        def skipped(part: dict[str, Any]) -> bool:
            return part["type"].startswith(kinds) and part_call_id(part) not in waiting

        dropped_ids: set[str] = set()
        for item in older:
            for part in item.message.parts:
                call_id = part_call_id(part)
                if call_id is not None and skipped(part):
                    dropped_ids.add(call_id)

        kept: list[WindowItem] = list(items[:lead])
        for item in older:
            parts = [
                p
                for p in item.message.parts
                if part_call_id(p) in waiting
                or (not skipped(p) and part_call_id(p) not in dropped_ids)
            ]
            if len(parts) == len(item.message.parts):
                kept.append(item)
            elif parts:
                ratio = len(parts) / len(item.message.parts)
                tokens = min(item.tokens, max(1, round(item.tokens * ratio)))
                message = Message(item.message.role, parts, item.message.metadata, tokens)
                kept.append(item.rewritten(message))
        kept.extend(current)
        return cut(kept, ctx, config["limit"])
