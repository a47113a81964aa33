"""The background compactor of ``summarize`` contexts.

Never on the request path: the engine calls :meth:`Summarizer.notify` after a
committed append leaves a ``summarize`` context over its trigger, and
``notify`` only queues the context id. Workers then, per context:

1. take the context's lease in the store (one summarisation per context across
   every process sharing the store; renewed while working, released after;
   a crashed holder's lease expires after ``lease_ttl``). Held elsewhere: look
   again after half a TTL.
2. snapshot the window and plan the fold (:func:`~fastpaca_core.folding.plan_fold`),
3. ask the configured model for the new summary (:mod:`~fastpaca_core.summary_llm`),
4. swap it in with :meth:`Engine.apply_summary`, which refuses a stale plan;
   then plan again (a stale plan, or a backlog folded in several rounds).

Upstream failures are retried with exponential backoff (``retry_initial``
doubling up to ``retry_max``, ``max_attempts`` per wake-up); meanwhile the
policy's synchronous trimming keeps the window within budget. Without a
server-held key for the provider, nothing is called: that is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from .errors import FastpacaError, StoreError, SummaryUpstreamError
from .folding import FoldPlan, plan_fold
from .model import ContextRecord, SummaryRecord
from .policies.base import over_trigger
from .policies.summarize import Summarize, wants_summary
from .summary_llm import SDKSummaryModel, SummaryModel
from .summary_prompt import Prompt, build_prompt, render_transcript

if TYPE_CHECKING:
    from .engine import Engine
    from .settings import Settings

__all__ = ["Summarizer", "SummarizerOptions"]

log = logging.getLogger("fastpaca.summarizer")


@dataclass(frozen=True, slots=True)
class SummarizerOptions:
    lease_ttl: float = 60.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    max_attempts: int = 6
    workers: int = 4
    max_input_tokens: int = 24_000
    max_rounds: int = 8  # swaps (or stale plans) per wake-up

    @classmethod
    def from_settings(cls, settings: Settings) -> SummarizerOptions:
        return cls(
            lease_ttl=settings.summarizer_lease_ttl,
            retry_initial=settings.summarizer_retry_initial,
            retry_max=settings.summarizer_retry_max,
            max_attempts=settings.summarizer_max_attempts,
            workers=settings.summarizer_workers,
            max_input_tokens=settings.summarizer_max_input_tokens,
        )


class Summarizer:
    """Folds older messages of ``summarize`` contexts into LLM summaries, off the request path.

    ``async with Summarizer(engine, model, options):`` starts it and hooks it
    to the engine; :meth:`summarize` runs one context now (tools, tests).
    """

    def __init__(
        self,
        engine: Engine,
        model: SummaryModel,
        options: SummarizerOptions | None = None,
        *,
        holder: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.engine = engine
        self.model = model
        self.options = options or SummarizerOptions()
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._sleep = sleep
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._waiting: dict[str, asyncio.TimerHandle] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._detach: Callable[[], None] | None = None
        self._warned: set[str] = set()
        # contexts whose newest summary gave way at once (larger than the budget
        # allows): folded again only once over the trigger, not for every hole
        self._gave_way: set[str] = set()
        self.summaries = 0  # swapped in by this summariser
        self.failures = 0  # upstream failures seen
        self.contended = 0  # times the lease was held elsewhere

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings) -> Summarizer:
        model = SDKSummaryModel.from_settings(settings)
        return cls(engine, model, SummarizerOptions.from_settings(settings))

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        if self._workers:
            return
        self._workers = [
            asyncio.create_task(self._worker(), name=f"fastpaca-summarizer-{i}")
            for i in range(self.options.workers)
        ]
        self._detach = self.engine.on_summary_due(self.notify)

    async def stop(self) -> None:
        """Stop working; leases held are released, queued work is dropped."""
        if self._detach is not None:
            self._detach()
            self._detach = None
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await self.model.close()

    async def __aenter__(self) -> Summarizer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def busy(self) -> bool:
        return bool(self._queued or self._active or self._waiting)

    async def idle(self, poll: float = 0.01) -> None:
        """Return once nothing is queued, running or waiting for a lease (tests)."""
        while self.busy:
            await asyncio.sleep(poll)

    # -- queueing ----------------------------------------------------------------

    def notify(self, context_id: str) -> None:
        """Queue ``context_id`` for a look; cheap, never waits."""
        if not self._workers:
            return
        if context_id in self._active:
            self._again.add(context_id)
            return
        if context_id in self._queued or context_id in self._waiting:
            return
        self._queued.add(context_id)
        self._queue.put_nowait(context_id)

    def _later(self, context_id: str, delay: float) -> None:
        def wake() -> None:
            self._waiting.pop(context_id, None)
            self.notify(context_id)

        if context_id not in self._waiting:
            self._waiting[context_id] = asyncio.get_running_loop().call_later(delay, wake)

    async def _worker(self) -> None:
        while True:
            context_id = await self._queue.get()
            self._queued.discard(context_id)
            self._active.add(context_id)
            try:
                await self._summarize(context_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("summariser failed", extra={"fields": {"context_id": context_id}})
            finally:
                self._active.discard(context_id)
            if context_id in self._again:
                self._again.discard(context_id)
                self.notify(context_id)

    # -- one context -------------------------------------------------------------

    async def summarize(self, context_id: str) -> SummaryRecord | None:
        """Fold ``context_id`` now if it is over its trigger; the newest summary swapped in.

        None when nothing was swapped in (not due, no key, lease held elsewhere,
        upstream down, or this summariser is already on it).
        """
        if context_id in self._active:
            return None
        self._active.add(context_id)
        try:
            return await self._summarize(context_id)
        finally:
            self._active.discard(context_id)

    async def _summarize(self, context_id: str) -> SummaryRecord | None:
        try:
            ctx = await self.engine.store.get_context(context_id)
        except FastpacaError:
            return None
        if ctx is None or not self._due(ctx):
            return None
        provider = ctx.policy.config["provider"]
        if not self.model.has_key(provider):  # before planning: no log read for nothing
            if provider not in self._warned:
                self._warned.add(provider)
                log.warning(
                    "no server-held %s API key: summaries are off, trimming keeps the budget",
                    provider,
                )
            return None
        try:
            planned = await self._plan(context_id, require_trigger=True)
        except FastpacaError:
            return None
        if planned is None:  # nothing to do: no lease taken, nothing written
            return None
        await self.model.prepare(provider)  # slow the first time: before the lease, not under it
        ttl = self.options.lease_ttl
        if not await self.engine.take_lease(context_id, self.holder, ttl):
            self.contended += 1
            self._later(context_id, ttl / 2)  # someone else is on it; look again
            return None
        lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew(context_id, lost))
        try:
            return await self._rounds(context_id, lost)
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            try:
                await asyncio.shield(self.engine.drop_lease(context_id, self.holder))
            except StoreError:
                pass  # it expires by itself

    async def _renew(self, context_id: str, lost: asyncio.Event) -> None:
        ttl = self.options.lease_ttl
        while True:
            await asyncio.sleep(ttl / 4)
            try:
                held = await self.engine.take_lease(context_id, self.holder, ttl)
            except StoreError:
                continue  # try again; the lease lasts a while yet
            if not held:
                lost.set()
                return

    def _backoff(self, attempt: int) -> float:
        delay = min(self.options.retry_max, self.options.retry_initial * 2.0 ** (attempt - 1))
        return delay * random.uniform(0.8, 1.0)

    async def _plan(
        self, context_id: str, require_trigger: bool
    ) -> tuple[ContextRecord, FoldPlan] | None:
        """A fold of a fresh snapshot, if the context is (still) due for one."""
        ctx, rows = await self.engine.store.read_window(context_id)
        if ctx is None or ctx.tombstoned or ctx.policy.strategy != Summarize.name:
            return None
        if require_trigger and not self._due(ctx):
            return None
        plan = await plan_fold(
            ctx,
            rows,
            keep_last=ctx.policy.config["keep_last"],
            max_tokens=self.options.max_input_tokens,
            read_log=partial(self.engine.store.read_messages, context_id),
        )
        return None if plan is None else (ctx, plan)

    def _due(self, ctx: ContextRecord) -> bool:
        """Whether ``ctx`` wants a fold (see :func:`wants_summary`); a hole
        trimming left counts only while summaries stay in the window."""
        if not wants_summary(ctx):
            return False
        return ctx.id not in self._gave_way or over_trigger(ctx)

    async def _prompt(self, plan: FoldPlan, max_tokens: int, instructions: str | None) -> Prompt:
        """The request for ``plan``, its transcript clipped to the plan's token
        budget: a message counted larger than the budget (the one a fold takes
        alone), or rendering more tokens than counted, must not take the
        request past ``max_input_tokens``."""
        limit: int | None = None
        for _ in range(4):
            transcript = render_transcript(plan.entries, limit)
            counted = await self.engine.tokens.acount_text(transcript)
            if not plan.budget or counted <= plan.budget:
                break
            limit = int(len(transcript) * plan.budget / counted * 0.9)
        return build_prompt(
            plan,
            max_summary_tokens=max_tokens,
            instructions=instructions,
            max_transcript_chars=limit,
        )

    async def _check_kept(self, context_id: str, record: SummaryRecord) -> None:
        """Note whether the summary just swapped in stayed in the window, or gave
        way at once (it leaves the window over its budget)."""
        ctx = await self.engine.store.get_context(context_id)
        covered = (record.from_seq, record.to_seq)
        kept = ctx is not None and any(
            entry.kind == "summary" and (entry.from_seq, entry.to_seq) == covered
            for entry in ctx.prefix
        )
        if kept:
            self._gave_way.discard(context_id)
        else:
            self._gave_way.add(context_id)

    async def _rounds(self, context_id: str, lost: asyncio.Event) -> SummaryRecord | None:
        engine, opts = self.engine, self.options
        newest: SummaryRecord | None = None
        attempts = rounds = 0
        require_trigger = True
        while rounds < opts.max_rounds:
            if lost.is_set():
                return newest
            planned = await self._plan(context_id, require_trigger)
            if planned is None:
                return newest
            ctx, plan = planned
            config = ctx.policy.config
            max_tokens = config["max_summary_tokens"]
            prompt = await self._prompt(plan, max_tokens, config.get("instructions"))
            provider, model = config["provider"], config["model"]
            try:
                completion = await self.model.summarize(provider, model, prompt, max_tokens)
            except SummaryUpstreamError as exc:
                self.failures += 1
                attempts += 1
                fields = {"context_id": context_id, "attempt": attempts, "error": str(exc)}
                if not exc.retryable or attempts >= opts.max_attempts:
                    log.warning(
                        "summary not written; trimming stays in charge", extra={"fields": fields}
                    )
                    return newest
                log.info("summary request failed; retrying", extra={"fields": fields})
                await self._sleep(self._backoff(attempts))
                # retry on a fresh snapshot even if trimming brought it under the trigger
                require_trigger = False
                continue
            attempts = 0
            rounds += 1
            record = await engine.apply_summary(
                plan,
                completion.text,
                provider=provider,
                model=model,
                prompt_sha256=prompt.sha256,
                token_count=completion.completion_tokens,
                lease=(self.holder, opts.lease_ttl),
            )
            if record is None:  # the window moved on meanwhile: plan again
                require_trigger = True
                continue
            self.summaries += 1
            newest = record
            require_trigger = not plan.partial
            await self._check_kept(context_id, record)
        if not require_trigger:  # a backlog remains: after the other contexts queued
            self._again.add(context_id)
        return newest
