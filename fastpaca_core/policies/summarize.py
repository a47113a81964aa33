"""``summarize {model, provider?, keep_last?, instructions?, max_summary_tokens?, limit?}``.

Two halves:

- Inside the append (synchronous) it is exactly ``last_n``: when the window is
  over the trigger and over the budget or ``limit`` messages, it is cut back to
  the trigger level with :func:`~fastpaca_core.window.fit`. So the budget
  holds on every append, whether the summariser is fast, slow or down.
- Off the request path, the :class:`~fastpaca_core.summarizer.Summarizer`
  folds everything but the pinned system messages and the newest
  ``keep_last`` messages into one LLM-written summary (see
  docs/summarization.md). The engine wakes it after an append that leaves the
  window over the trigger.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ValidationError
from ..model import ContextRecord
from ..window import WindowItem
from .base import cut, due, over_trigger, positive_int, window_count

__all__ = ["PROVIDERS", "Summarize", "trimmed_unsummarised", "wants_summary"]

PROVIDERS = ("openai", "anthropic")
MAX_MODEL_LENGTH = 256
MAX_INSTRUCTIONS = 8000
MAX_SUMMARY_TOKENS = 100_000


_TEXT_WHITESPACE = frozenset("\t\n\r")


def _control_free(value: str, multiline: bool) -> bool:
    """No NUL, control or unpaired-surrogate characters: they reach PostgreSQL
    text columns (which cannot hold NUL) and the upstream LLM request.

    A one-line setting (``model``) must be all printable; ``multiline`` text
    (``instructions``) may also hold tabs and line breaks.
    """
    if not multiline:
        return value.isprintable()
    return all(
        ch in _TEXT_WHITESPACE or unicodedata.category(ch) not in ("Cc", "Cs") for ch in value
    )


def _string(
    config: Mapping[str, Any], key: str, limit: int, required: bool, multiline: bool = False
) -> str | None:
    value = config.get(key)
    if value is None:
        if required:
            raise ValidationError(f"policy.config.{key}", "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"policy.config.{key}", "must be a non-empty string")
    if len(value) > limit:
        raise ValidationError(f"policy.config.{key}", f"must be at most {limit} characters")
    if not _control_free(value, multiline):
        raise ValidationError(f"policy.config.{key}", "must not contain NUL or control characters")
    return value


class Summarize:
    name = "summarize"
    compacts = True

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        model = _string(config, "model", MAX_MODEL_LENGTH, required=True)
        provider = config.get("provider", "openai")
        if provider not in PROVIDERS:
            raise ValidationError(
                "policy.config.provider", f"must be one of {', '.join(PROVIDERS)}"
            )
        out: dict[str, Any] = {
            **config,
            "model": model,
            "provider": provider,
            "keep_last": positive_int(config, "keep_last", 6),
            "max_summary_tokens": positive_int(config, "max_summary_tokens", 512),
            "limit": positive_int(config, "limit", 200),
        }
        if out["max_summary_tokens"] > MAX_SUMMARY_TOKENS:
            raise ValidationError(
                "policy.config.max_summary_tokens", f"must be at most {MAX_SUMMARY_TOKENS}"
            )
        instructions = _string(
            config, "instructions", MAX_INSTRUCTIONS, required=False, multiline=True
        )
        if instructions is None:
            out.pop("instructions", None)
        return out

    def should_run(self, ctx: ContextRecord, config: Mapping[str, Any]) -> bool:
        return due(ctx, config["limit"])

    def compact(
        self, items: Sequence[WindowItem], ctx: ContextRecord, config: Mapping[str, Any]
    ) -> list[WindowItem]:
        return cut(items, ctx, config["limit"])


def wants_summary(ctx: ContextRecord, *, trimmed: bool = True) -> bool:
    """A ``summarize`` context due for a fold: wake the summariser.

    Due when the window is over the trigger, or when trimming dropped messages
    no summary stands for yet (:func:`trimmed_unsummarised`): an append that
    jumps from under the trigger to over the budget (a band narrower than a
    message, ``trigger_ratio`` 1.0) is cut back under the trigger in the same
    append, and would otherwise never be summarised. ``trimmed``: whether
    trimming made the hole; an append passes whether its own policy run cut
    (an explicit compaction, ``clear()`` to nothing, leaves the same hole, and
    what it cleared must stay out of the window).
    """
    if ctx.policy.strategy != Summarize.name or ctx.tombstoned:
        return False
    return over_trigger(ctx) or (trimmed and trimmed_unsummarised(ctx))


def trimmed_unsummarised(ctx: ContextRecord) -> bool:
    """The window skips log messages right after its pinned leading system
    messages and its summary (where trimming cuts), and holds more than
    ``keep_last`` messages besides them (something to fold).

    Read from the context row alone (the prefix is a few entries). A hole
    further on (a rewind retracting the newest messages) is not trimming's.
    """
    expected = 1  # the seq the window goes on with when nothing is skipped
    pinned = 0
    for entry in ctx.prefix:
        leading = entry.kind == "live" and entry.message.role == "system"
        if leading and entry.from_seq == expected == pinned + 1:
            pinned += 1
        elif entry.kind != "summary" or entry.from_seq > expected:
            return entry.from_seq > expected and _foldable(ctx, pinned)
        expected = entry.to_seq + 1
    live = ctx.live_from_seq <= ctx.last_seq
    return live and ctx.live_from_seq > expected and _foldable(ctx, pinned)


def _foldable(ctx: ContextRecord, pinned: int) -> bool:
    return window_count(ctx) - pinned > int(ctx.policy.config["keep_last"])
