"""``last_n {limit}``: keep the newest ``limit`` messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..model import ContextRecord
from ..window import WindowItem, fit
from .base import hysteresis_target, over_trigger, positive_int, window_count

__all__ = ["LastN"]


class LastN:
    name = "last_n"
    compacts = True

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {**config, "limit": positive_int(config, "limit", 200)}

    def should_run(self, ctx: ContextRecord, config: Mapping[str, Any]) -> bool:
        if not over_trigger(ctx):
            return False
        return ctx.used_tokens > ctx.token_budget or window_count(ctx) > config["limit"]

    def compact(
        self, items: Sequence[WindowItem], ctx: ContextRecord, config: Mapping[str, Any]
    ) -> list[WindowItem]:
        return fit(items, ctx.token_budget, limit=config["limit"], target=hysteresis_target(ctx))
