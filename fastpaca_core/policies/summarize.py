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
from .base import cut, due, over_trigger, positive_int

__all__ = ["PROVIDERS", "Summarize", "wants_summary"]

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


def wants_summary(ctx: ContextRecord) -> bool:
    """A ``summarize`` context whose window is over the trigger: wake the summariser."""
    return ctx.policy.strategy == Summarize.name and not ctx.tombstoned and over_trigger(ctx)
