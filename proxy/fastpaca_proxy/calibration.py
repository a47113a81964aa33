"""Token calibration: the provider's prompt count corrects our estimate.

When an upstream reply reports its prompt tokens (``Usage.prompt_tokens``),
the proxy compares them with its own count of what it sent: the window's
messages as stored (the very counts the context's calibration factor scales,
``used_tokens = estimate * factor``) plus the request's preamble, tools and
parameters as compact JSON text (as the proxy reserves them). Both are known
before the request goes out, so the estimate costs nothing. The pair
(:func:`usage_sample`) rides with the turn's append
(``Engine.append_batch(usage=...)``, learnt as :meth:`Engine.record_usage`
does): one write and one policy run per turn.

:func:`estimate_prompt_tokens` counts a request body alone, converting its
conversation back and counting it afresh. For a non-streamed request it
equals the proxy's figure while every window message's stored count is our
own (a reply is stored with the provider's ``completion_tokens`` when it
reports them, and counts as the provider said).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.model import MAX_INT
from fastpaca_core.tokens import TokenCounter

from .adapters import Adapter

__all__ = ["estimate_prompt_tokens", "usage_sample"]


def estimate_prompt_tokens(
    counter: TokenCounter, adapter: Adapter, upstream_body: Mapping[str, Any]
) -> int:
    """Our estimate of the prompt in ``upstream_body`` (what was sent upstream).

    The conversation, converted back to our message shape, counted as the
    engine counts appended messages (tiktoken, 4 tokens per message), plus the
    rest of the body (preamble, tools, parameters) as compact JSON text, as
    the proxy reserves it. A pure function of the body (counts are cached by
    content, see ``TokenCounter.count_fresh``); the proxy itself learns from
    the stored counts instead (see the module's docstring).
    """
    chat = adapter.split(upstream_body)
    rest = {k: v for k, v in upstream_body.items() if k != adapter.conversation_key}
    messages = sum(counter.count_fresh(m) for m in chat.messages)
    return messages + counter.count_text_cached(dumps_str([rest, chat.preamble]))


def usage_sample(estimate: int, prompt_tokens: object) -> tuple[int, int] | None:
    """``(estimate, prompt_tokens)`` for ``append_batch(usage=...)`` when the
    provider reported a usable prompt count; None when there is nothing to
    learn (no count, or one no 64-bit column holds)."""
    if (
        not isinstance(prompt_tokens, int)
        or isinstance(prompt_tokens, bool)
        or not 0 < prompt_tokens <= MAX_INT
        or not 0 <= estimate <= MAX_INT
    ):
        return None
    return estimate, prompt_tokens
