"""Token calibration: the provider's prompt count corrects our estimate.

When an upstream reply reports its prompt tokens (``Usage.prompt_tokens``),
the proxy compares them with :func:`estimate_prompt_tokens` of the body it
sent and feeds the pair to :meth:`Engine.record_usage`, which moves the
context's calibration factor (``used_tokens = estimate * factor``). The
estimate is computed in a background task on a worker thread, after the
reply is on its way: never on the request path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from fastpaca_core.engine import Engine
from fastpaca_core.errors import FastpacaError
from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.tokens import TokenCounter

from .adapters import Adapter

__all__ = ["CALIBRATOR", "Calibrator", "calibrator_ctx", "estimate_prompt_tokens"]

log = logging.getLogger("fastpaca.proxy")


def estimate_prompt_tokens(
    counter: TokenCounter, adapter: Adapter, upstream_body: Mapping[str, Any]
) -> int:
    """Our estimate of the prompt in ``upstream_body`` (what was sent upstream).

    The conversation, converted back to our message shape, counted as the
    engine counts appended messages (tiktoken, 4 tokens per message), plus the
    rest of the body (preamble, tools, parameters) as compact JSON text, as
    the proxy reserves it. A pure function of the body.
    """
    chat = adapter.split(upstream_body)
    rest = {k: v for k, v in upstream_body.items() if k != adapter.conversation_key}
    messages = sum(counter.count_message(replace(m, token_count=None)) for m in chat.messages)
    return messages + counter.count_text(dumps_str([rest, chat.preamble]))


class Calibrator:
    """Background calibrations of one app; drained on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(
        self,
        engine: Engine,
        context_id: str,
        adapter: Adapter,
        upstream_body: Mapping[str, Any],
        prompt_tokens: object,
    ) -> None:
        """Schedule a calibration when the provider reported ``prompt_tokens``."""
        if not isinstance(prompt_tokens, int) or isinstance(prompt_tokens, bool):
            return
        if prompt_tokens <= 0:
            return
        task = asyncio.create_task(
            self._calibrate(engine, context_id, adapter, upstream_body, prompt_tokens)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _calibrate(
        engine: Engine,
        context_id: str,
        adapter: Adapter,
        upstream_body: Mapping[str, Any],
        prompt_tokens: int,
    ) -> None:
        try:
            estimate = await asyncio.to_thread(
                estimate_prompt_tokens, engine.tokens, adapter, upstream_body
            )
            await engine.record_usage(context_id, estimate, prompt_tokens)
        except (FastpacaError, TypeError, ValueError, KeyError) as exc:
            log.info(
                "calibration skipped",
                extra={"fields": {"context_id": context_id, "error": type(exc).__name__}},
            )

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)


CALIBRATOR = web.AppKey("calibrator", Calibrator)


async def calibrator_ctx(app: web.Application) -> AsyncIterator[None]:
    calibrator = Calibrator()
    app[CALIBRATOR] = calibrator
    yield
    await calibrator.drain()
