"""A proxied call's turn and the log: the snapshot and alignment it is built
on, its token counts, and its append once the upstream answered.

The store side of a call (``flow`` holds its HTTP side). A turn the upstream
answered was paid for, so storing it is carried through whatever happens to
the request meanwhile: the request deadline is lifted for it (the store has
its own timeouts), and when the turn cannot be stored (the context was
deleted meanwhile) the reply's headers describe the context as it is, never
a turn it does not hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fastpaca_core.engine import AppendResult, Engine
from fastpaca_core.errors import (
    ContextNotFound,
    ContextTombstoned,
    FastpacaError,
    VersionConflict,
)
from fastpaca_core.http.limits import DEADLINE
from fastpaca_core.jsonutil import check_json
from fastpaca_core.model import (
    MAX_INT,
    ContextRecord,
    Message,
    StoredMessage,
    calibrated,
    utcnow,
)

from .adapters import Adapter, Usage
from .calibration import usage_sample
from .turns import Alignment, align, fingerprint, name_results, tail_match, tail_size, window_sizes

__all__ = [
    "Turn",
    "align_with_log",
    "count_later",
    "count_turn",
    "drop_count",
    "lift_deadline",
    "store_answered",
    "store_turn",
]

log = logging.getLogger("fastpaca.proxy")


@dataclass(frozen=True, slots=True)
class Turn:
    """What a call sends (``flow._prepare`` builds it), and what storing it needs."""

    ctx: ContextRecord
    preamble: list[dict[str, Any]]
    new: list[Message]  # with their token counts, unless not ``counted`` yet
    rewind_to_seq: int | None
    window: Sequence[Message]
    used_tokens: int  # the window's, calibrated; only when ``counted``
    base_tokens: int  # the window's tokens besides the new turn (ours)
    reserved_tokens: int  # the request's preamble, tools and parameters (ours)
    adapter: Adapter
    request: list[Message]  # the request's messages besides the preamble
    counted: bool = True


async def _snapshot(
    engine: Engine,
    context_id: str,
    newest: int,
    oldest: int,
    before_create: Callable[[], None] | None,
) -> tuple[ContextRecord, list[StoredMessage], list[StoredMessage]]:
    """The context (created with the server's defaults when it does not exist
    yet), its live rows, and its newest ``newest`` and first ``oldest`` log
    rows: one snapshot, one store read in the common case.

    ``before_create`` raises, before the context is created, what ``flow._prepare``
    would refuse later (JSON nested too deeply to store or send on), so such
    a request leaves no context behind. None: a missing context is not
    created, but read as the empty one it would be (a token count)."""
    try:
        return await engine.read_turn(context_id, newest, oldest)
    except ContextNotFound:
        if before_create is None:
            return ContextRecord.new(context_id, utcnow()), [], []
        before_create()
        return await engine.put_context(context_id), [], []


async def align_with_log(
    engine: Engine,
    adapter: Adapter,
    context_id: str,
    request: list[Message],
    before_create: Callable[[], None] | None,
) -> tuple[ContextRecord, list[StoredMessage], Alignment]:
    """The snapshot (context and live rows) and the request aligned with the log.

    First on the newest ``tail_size`` rows only (a client that resends its
    history, or sends only its newest message); the wider read of
    ``window_sizes`` only when that does not settle it.
    """
    newest = tail_size(len(request))
    ctx, live, rows = await _snapshot(engine, context_id, newest, 0, before_create)
    if ctx.tombstoned:
        raise ContextTombstoned(context_id)
    messages = adapter.resolve(request, rows)
    # a request that holds the log's newest messages, then its new turn (the
    # common case, whole log or not): settled on those messages alone
    if not adapter.unresolved(messages):
        alignment = tail_match(messages, rows, ctx.last_seq)
        if alignment is not None:
            return ctx, live, name_results(alignment, rows)
    if ctx.last_seq <= newest:  # these rows are the whole log: nothing wider to read
        return ctx, live, name_results(align(messages, rows, ctx.last_seq), rows)
    ctx, live, rows = await _snapshot(
        engine, context_id, *window_sizes(len(request)), before_create
    )
    if ctx.tombstoned:
        raise ContextTombstoned(context_id)
    messages = adapter.resolve(request, rows)
    return ctx, live, name_results(align(messages, rows, ctx.last_seq), rows)


def count_later(engine: Engine, turn: Turn) -> asyncio.Future[list[int]] | None:
    """The count of a turn not counted before it was sent, started now and run
    once the request has gone out, while the upstream works (the event loop
    would only wait), not after the reply came. None when the turn is counted."""
    if turn.counted:
        return None

    async def count() -> list[int]:
        # one step later: the request's body is written by a task aiohttp starts
        # after this one (Python < 3.12), which goes first
        await asyncio.sleep(0)
        return await engine.tokens.acount_fresh(turn.new)

    return asyncio.ensure_future(count())


def drop_count(counting: asyncio.Future[list[int]] | None) -> None:
    """A count no one awaits (the call failed): stopped, or its outcome taken."""
    if counting is None:
        return
    if not counting.done():
        counting.cancel()
    elif not counting.cancelled():
        counting.exception()  # taken: a failed count is no "never retrieved" warning


async def count_turn(
    engine: Engine, turn: Turn, counting: asyncio.Future[list[int]] | None = None
) -> tuple[list[Message], int, int]:
    """The new turn with its token counts, and the window's tokens with it:
    calibrated, and ours. A turn not counted before it was sent is counted now,
    or taken from ``counting`` (``count_later``)."""
    if turn.counted:
        counts = [m.token_count or 0 for m in turn.new]
        return turn.new, turn.used_tokens, turn.base_tokens + sum(counts)
    try:
        counts = await (counting or engine.tokens.acount_fresh(turn.new))
    except Exception:  # noqa: BLE001 - no thread to count on (shutting down): count here
        counts = [engine.tokens.count_fresh(m) for m in turn.new]
    new = [m.with_tokens(c) for m, c in zip(turn.new, counts, strict=True)]
    ours = turn.base_tokens + sum(counts)
    return new, calibrated(ours, turn.ctx.calibration), ours


async def store_turn(
    engine: Engine,
    context_id: str,
    turn: Turn,
    reply: Message,
    usage: Usage,
    counting: asyncio.Future[list[int]] | None = None,
) -> tuple[AppendResult | None, int]:
    """Append the turn (with the reply) and, in the same write, what the
    provider's prompt count teaches the context's calibration. Returns the
    append's result (None when storing failed) and the window's tokens as
    sent (see ``count_turn``).

    The reply (a stream's last event) need not wait for the disk
    (``reply_before_sync``), as the client has its answer whether or not the
    turn is stored (a store failure is logged, below): on SQLite the turn's
    COMMIT follows the reply, and every later request still finds the turn."""
    completion = usage.completion_tokens
    if isinstance(completion, int) and not isinstance(completion, bool):
        # a count no 64-bit column holds: ours instead, as for any message
        fits = 0 <= completion <= MAX_INT
        reply = reply.with_tokens(completion if fits else None)
    new, used, ours = await count_turn(engine, turn, counting)
    # what the upstream was sent, by our count: the window as stored and counted
    # (the counts the calibration factor scales) and the rest of the request
    sample = usage_sample(ours + turn.reserved_tokens, usage.prompt_tokens)
    try:
        check_json([reply.parts, reply.metadata], "reply")  # the upstream's, stored as given
        stored = await _append(engine, context_id, turn, new, reply, sample)
    except FastpacaError as exc:
        # The client has its answer; losing the turn is logged, not turned into an error
        # that would make the client pay for the same call again.
        log.warning(
            "turn not stored", extra={"fields": {"context_id": context_id, "error": exc.code}}
        )
        return None, used
    return stored, used


_REALIGNS = 8  # a turn aligned again this often is then appended as it stands


async def _append(
    engine: Engine,
    context_id: str,
    turn: Turn,
    new: list[Message],
    reply: Message,
    usage: tuple[int, int] | None,
) -> AppendResult:
    """Append the turn as aligned with the snapshot it was built from, unless
    another call stored the same turn meanwhile (a double click, two tabs, a
    retry on another worker): its first rows after the snapshot are this
    turn's first message. The request is then aligned again with the log as
    it is now, as if it had come after that call (a resent history
    regenerates the answer, resent tool results replace theirs), instead of
    giving the window the turn twice, or a call two results. Other writes
    meanwhile (other turns, compactions) leave the turn as it was aligned."""
    ctx, rewind, attempts = turn.ctx, turn.rewind_to_seq, 0
    while True:
        try:
            return await engine.append_batch(
                context_id,
                [*new, reply],
                if_version=None if attempts == _REALIGNS else ctx.version,
                rewind_to_seq=rewind,
                usage=usage,
                reply_before_sync=True,
            )
        except VersionConflict:
            attempts += 1
        since = await engine.read_log(context_id, ctx.last_seq + 1, ctx.last_seq + 1)
        if not (new and since and fingerprint(since[0]) == fingerprint(new[0])):
            attempts = _REALIGNS  # others' turns: this one follows them as aligned
            continue
        ctx, _, alignment = await align_with_log(
            engine, turn.adapter, context_id, turn.request, None
        )
        counts = await engine.tokens.acount_fresh(alignment.new)
        new = [m.with_tokens(c) for m, c in zip(alignment.new, counts, strict=True)]
        rewind = alignment.rewind_to_seq


def lift_deadline(request: web.Request) -> None:
    """The request deadline no longer applies (one attribute set): called once
    the upstream's answer has begun (its status line came; its body follows
    within the upstream's own timeout), so that the deadline cannot cancel
    the call between the answer arriving and its turn being stored."""
    deadline = request.get(DEADLINE)
    if deadline is not None:
        deadline.when = None


async def store_answered(
    request: web.Request,
    engine: Engine,
    context_id: str,
    turn: Turn,
    reply: Message,
    usage: Usage,
    counting: asyncio.Future[list[int]] | None,
) -> tuple[int, int, bool]:
    """Store a non-streamed turn the upstream answered: the version and tokens
    its reply's headers name, and whether the turn was stored.

    The request deadline is lifted first (one attribute set; as it is once a
    stream's headers went out): cancelling the handler mid-append would drop
    the append the upstream's answer was paid for (the store skips a write
    whose caller gave up), and the client would get a 503 for an answer that
    existed. The store bounds the wait itself (``store_timeout``). A turn
    that is not stored (the context deleted meanwhile, the store failing) is
    not claimed: the headers then describe the context as it is, without it."""
    lift_deadline(request)
    stored, used = await store_turn(engine, context_id, turn, reply, usage, counting)
    if stored is not None:
        return stored.version, stored.used_tokens or used, True
    try:
        ctx = await engine.get_context(context_id)
    except FastpacaError:  # unreadable too: the context as this call read it
        ctx = turn.ctx
    return ctx.version, ctx.used_tokens, False
