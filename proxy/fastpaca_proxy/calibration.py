"""Token calibration: the provider's prompt count corrects our estimate.

When an upstream reply reports its prompt tokens (``Usage.prompt_tokens``),
the proxy compares them with :func:`estimate_prompt_tokens` of the body it
sent and hands the pair to the turn's append (``Engine.append_batch(usage=)``,
learnt as :meth:`Engine.record_usage` does), which moves the context's
calibration factor (``used_tokens = estimate * factor``).

The estimate is computed while the upstream works on the request (a task
started once the request has gone out), from counts cached by content (the
same messages are re-sent every turn), so it is ready when the reply arrives.
The sample then rides with the turn's append (``append_batch(usage=...)``):
one write and one policy run per turn, no write of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.model import MAX_INT
from fastpaca_core.tokens import TokenCounter

from .adapters import Adapter

__all__ = [
    "CALIBRATOR",
    "Calibrator",
    "Estimate",
    "aestimate_prompt_tokens",
    "calibrator_ctx",
    "estimate_prompt_tokens",
]

log = logging.getLogger("fastpaca.proxy")


def estimate_prompt_tokens(
    counter: TokenCounter, adapter: Adapter, upstream_body: Mapping[str, Any]
) -> int:
    """Our estimate of the prompt in ``upstream_body`` (what was sent upstream).

    The conversation, converted back to our message shape, counted as the
    engine counts appended messages (tiktoken, 4 tokens per message), plus the
    rest of the body (preamble, tools, parameters) as compact JSON text, as
    the proxy reserves it. A pure function of the body (counts are cached by
    content, see ``TokenCounter.count_fresh``).
    """
    chat = adapter.split(upstream_body)
    rest = {k: v for k, v in upstream_body.items() if k != adapter.conversation_key}
    messages = sum(counter.count_fresh(m) for m in chat.messages)
    return messages + counter.count_text_cached(dumps_str([rest, chat.preamble]))


async def aestimate_prompt_tokens(
    counter: TokenCounter, adapter: Adapter, upstream_body: Mapping[str, Any]
) -> int:
    """``estimate_prompt_tokens``; large uncached texts are counted off the loop."""
    chat = adapter.split(upstream_body)
    rest = {k: v for k, v in upstream_body.items() if k != adapter.conversation_key}
    messages = sum(await counter.acount_fresh(chat.messages))
    return messages + await counter.acount_text(dumps_str([rest, chat.preamble]))


class Estimate:
    """The estimate of one upstream body, computed while the upstream works.

    ``start`` it once the request has gone out: a call starts it before it
    waits for the answer; a stream once its first event reached the client,
    so the count never delays that event.
    """

    def __init__(
        self,
        calibrator: Calibrator,
        counter: TokenCounter,
        adapter: Adapter,
        upstream_body: Mapping[str, Any],
    ) -> None:
        self._calibrator = calibrator
        self._args = (counter, adapter, upstream_body)
        self.task: asyncio.Task[int] | None = None
        self.used = False

    def start(self) -> asyncio.Task[int]:
        if self.task is None:
            self.task = asyncio.create_task(_estimate_soon(*self._args))
            self.task.add_done_callback(_retrieve)
            self._calibrator.track(self.task)
        return self.task

    def close(self) -> None:
        """No calibration will use it (the call failed): stop computing it."""
        if not self.used and self.task is not None:
            self.task.cancel()


async def _estimate_soon(
    counter: TokenCounter, adapter: Adapter, upstream_body: Mapping[str, Any]
) -> int:
    await asyncio.sleep(0)  # let the upstream request go out first
    return await aestimate_prompt_tokens(counter, adapter, upstream_body)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # reported by the calibration that awaits it, if any


class Calibrator:
    """Calibrations of one app; drained on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def estimate(
        self, counter: TokenCounter, adapter: Adapter, upstream_body: Mapping[str, Any]
    ) -> Estimate:
        """An estimate of ``upstream_body``, to ``start`` once it was sent (the
        body must not change afterwards)."""
        return Estimate(self, counter, adapter, upstream_body)

    @staticmethod
    async def sample(
        estimate: Estimate, prompt_tokens: object, context_id: str
    ) -> tuple[int, int] | None:
        """``(estimate, prompt_tokens)`` for ``append_batch(usage=...)`` when the
        provider reported a usable ``prompt_tokens``; None when there is
        nothing to learn (no count, one out of range, or the estimate failed).
        Never raises for the estimate: the turn is stored either way."""
        if (
            not isinstance(prompt_tokens, int)
            or isinstance(prompt_tokens, bool)
            or not 0 < prompt_tokens <= MAX_INT
        ):
            estimate.close()
            return None
        estimate.used = True
        task = estimate.start()
        error = None
        try:
            value = await task  # no suspension when it is done already
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this call is being cancelled, not only the estimate
            value, error = None, "cancelled"
        except Exception as exc:  # the estimate is best effort; the turn is not
            value, error = None, type(exc).__name__
        if value is None or not 0 <= value <= MAX_INT:
            log.info(
                "calibration skipped",
                extra={"fields": {"context_id": context_id, "error": error or "out_of_range"}},
            )
            return None
        return value, prompt_tokens

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)


CALIBRATOR = web.AppKey("calibrator", Calibrator)


async def calibrator_ctx(app: web.Application) -> AsyncIterator[None]:
    calibrator = Calibrator()
    app[CALIBRATOR] = calibrator
    yield
    await calibrator.drain()
