"""``last_n {limit}``: keep the newest ``limit`` messages.

Acts when the window is over the trigger and over either the budget or
``limit`` messages; then cuts back under the trigger level and, when over
``limit`` messages, to ``limit * trigger_ratio`` of them (``limit_target``), so
the next run is several turns away, not one append away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..model import ContextRecord
from ..window import WindowItem
from .base import cut, due, positive_int

__all__ = ["LastN"]


class LastN:
    name = "last_n"
    compacts = True

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {**config, "limit": positive_int(config, "limit", 200)}

    def should_run(self, ctx: ContextRecord, config: Mapping[str, Any]) -> bool:
        return due(ctx, config["limit"])

    def compact(
        self, items: Sequence[WindowItem], ctx: ContextRecord, config: Mapping[str, Any]
    ) -> list[WindowItem]:
        return cut(items, ctx, config["limit"])
