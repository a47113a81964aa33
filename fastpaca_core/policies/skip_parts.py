"""``skip_parts {limit, skip_kinds?}``: drop bulky parts, then ``last_n``.

Parts whose type starts with one of ``skip_kinds`` (default ``tool`` and
``reasoning``) are dropped, and messages left empty with them. The turn in
flight (everything after the newest user message) is left whole, so an agent
loop never loses the tool result it is about to answer. A call whose result
is dropped loses its call too, and the reverse: tool pairs are never split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ValidationError
from ..model import ContextRecord, Message
from ..toolcalls import part_call_id
from ..window import WindowItem
from .base import cut, due, positive_int

__all__ = ["SkipParts"]

DEFAULT_SKIP_KINDS = ["tool", "reasoning"]


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
        in_flight = len(items)
        for index in range(len(items) - 1, -1, -1):
            if items[index].message.role == "user":
                in_flight = index + 1
                break
        older, current = items[:in_flight], items[in_flight:]

        dropped_ids: set[str] = set()
        for item in older:
            for part in item.message.parts:
                call_id = part_call_id(part)
                if call_id is not None and part["type"].startswith(kinds):
                    dropped_ids.add(call_id)

        kept: list[WindowItem] = []
        for item in older:
            parts = [
                p
                for p in item.message.parts
                if not p["type"].startswith(kinds) and part_call_id(p) not in dropped_ids
            ]
            if len(parts) == len(item.message.parts):
                kept.append(item)
            elif parts:
                ratio = len(parts) / len(item.message.parts)
                tokens = max(1, round(item.tokens * ratio))
                message = Message(item.message.role, parts, item.message.metadata, tokens)
                kept.append(item.rewritten(message))
        kept.extend(current)
        return cut(kept, ctx, config["limit"])
