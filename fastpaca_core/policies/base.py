"""What every compaction policy provides."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..errors import ValidationError
from ..model import ContextRecord, trigger_level
from ..window import WindowItem, fit

__all__ = [
    "Policy",
    "budget_limit",
    "cut",
    "due",
    "hysteresis_target",
    "limit_target",
    "over_trigger",
    "positive_int",
    "trigger_level",
    "window_count",
]


class Policy(Protocol):
    """A compaction strategy, chosen by ``policy.strategy``."""

    name: str
    compacts: bool  # False: never changes the window (``manual``)

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Return the normalised config or raise ValidationError naming the field."""
        ...

    def should_run(self, ctx: ContextRecord, config: Mapping[str, Any]) -> bool:
        """Cheap check on the context row alone: is a compaction due now?"""
        ...

    def compact(
        self, items: Sequence[WindowItem], ctx: ContextRecord, config: Mapping[str, Any]
    ) -> list[WindowItem]:
        """The new window; must keep every guarantee (use ``window.fit``)."""
        ...


def positive_int(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValidationError(f"policy.config.{key}", "must be an integer greater than 0")
    return value


def window_count(ctx: ContextRecord) -> int:
    return len(ctx.prefix) + ctx.last_seq - ctx.live_from_seq + 1


def over_trigger(ctx: ContextRecord) -> bool:
    """``used_tokens`` (calibrated) over ``token_budget * trigger_ratio``."""
    return ctx.used_tokens > trigger_level(ctx.token_budget, ctx.trigger_ratio)


def due(ctx: ContextRecord, limit: int) -> bool:
    """Over the trigger, and over the budget or the message limit."""
    if not over_trigger(ctx):
        return False
    return ctx.used_tokens > ctx.token_budget or window_count(ctx) > limit


def budget_limit(ctx: ContextRecord) -> int:
    """The budget in estimated tokens (what ``fit`` compares item tokens with)."""
    return ctx.estimate_limit(ctx.token_budget)


def hysteresis_target(ctx: ContextRecord) -> int:
    """Where a compaction cuts down to: the trigger level, in estimated tokens."""
    return ctx.estimate_limit(trigger_level(ctx.token_budget, ctx.trigger_ratio))


def limit_target(ctx: ContextRecord, limit: int) -> int:
    """Where a compaction over ``limit`` messages cuts down to: ``limit`` times the
    trigger ratio (rounded up), as the token budget is cut to the trigger level.

    Cutting to ``limit`` itself would leave a window whose messages average
    about ``budget * ratio / limit`` tokens at the trigger level with ``limit``
    messages, so that every append would compact again."""
    # round first: 100 * 0.07 is 7.000000000000001 in floating point, and 7 is meant
    return max(1, min(limit, math.ceil(round(limit * ctx.trigger_ratio, 9))))


def cut(items: Sequence[WindowItem], ctx: ContextRecord, limit: int) -> list[WindowItem]:
    """What ``last_n`` (and the policies built on it) keep: under the trigger
    level, and under ``limit_target`` messages when over ``limit``."""
    return fit(
        items,
        budget_limit(ctx),
        limit=limit,
        limit_target=limit_target(ctx, limit),
        target=hysteresis_target(ctx),
    )
