"""The engine: every operation on contexts, each one atomic, over a Store.

Appends and context reads cost the same whatever the length of the history:
an append is one insert and one update of the context row; a read is one
range scan of the live window; ``used_tokens`` is arithmetic on running totals
(times the context's calibration factor).

Besides the wire operations: ``apply_summary`` (the summariser's swap),
``list_summaries``, ``take_lease`` / ``drop_lease`` (one summariser per
context) and ``record_usage`` (token calibration); ``on_summary_due`` is how
the summariser hears that a context is over its trigger.

:class:`Engine` is the whole API; the longer operation bodies live beside it:
the append in :mod:`.appends` (with the idempotency checks every keyed write
shares), ``compact`` and ``apply_summary`` in :mod:`.summaries`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from . import summaries
from .appends import append_messages
from .calibration import calibrate, calibration_sample
from .compaction import calls_answered, run_policy
from .errors import ContextNotFound, ValidationError, VersionConflict
from .events import Event, EventBus
from .folding import FoldPlan
from .model import (
    ContextRecord,
    Message,
    StoredMessage,
    SummaryRecord,
    calibrated,
    parse_messages,
    utcnow,
    validate_context_id,
    validate_metadata,
    validate_public_id,
    validate_token_budget,
    validate_trigger_ratio,
)
from .policies import parse_policy
from .policies.base import trigger_level
from .policies.summarize import wants_summary
from .results import (
    AppendResult,
    ContextPage,
    SummaryPage,
    Window,
    check_int,
    decode_cursor,
    decode_version_cursor,
    encode_cursor,
    encode_version_cursor,
)
from .stores.base import Store, Tx, read_capped
from .tokens import TokenCounter
from .toolcalls import parts_refs
from .window import WindowItem, drop_orphan_results, fit, items_of, without_results

__all__ = ["AppendResult", "ContextPage", "Engine", "SummaryPage", "Window"]

# log rows read, besides the newest one before the window, looking for the call
# a pending tool result answers when the window no longer holds it
_CALL_SEARCH = 16


class Engine:
    """Context operations over a store. Events go to ``bus`` after each commit."""

    def __init__(
        self,
        store: Store,
        *,
        tokens: TokenCounter | None = None,
        bus: EventBus | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.tokens = tokens or TokenCounter()
        self.bus = bus or EventBus()
        self._clock = clock
        self._summary_hooks: list[Callable[[str], None]] = []

    def on_summary_due(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(context_id)`` after a commit that leaves a ``summarize``
        context over its trigger (how the summariser wakes). It must not block.
        Returns the function that removes the hook."""
        self._summary_hooks.append(callback)

        def remove() -> None:
            if callback in self._summary_hooks:
                self._summary_hooks.remove(callback)

        return remove

    def _wake(self, context_id: str) -> None:
        for callback in tuple(self._summary_hooks):
            callback(context_id)

    # -- contexts ---------------------------------------------------------

    async def put_context(
        self,
        context_id: str,
        *,
        token_budget: object = None,
        trigger_ratio: object = None,
        policy: object = None,
        metadata: object = None,
    ) -> ContextRecord:
        """Create the context, or update the fields given; idempotent."""
        validate_context_id(context_id)
        budget = None if token_budget is None else validate_token_budget(token_budget)
        ratio = None if trigger_ratio is None else validate_trigger_ratio(trigger_ratio)
        spec = None if policy is None else parse_policy(policy)
        meta = None if metadata is None else validate_metadata(metadata)
        now = self._clock()

        async def op(tx: Tx) -> tuple[ContextRecord, bool]:
            ctx = await tx.load_context()
            if ctx is None:
                ctx = ContextRecord.new(
                    context_id,
                    now,
                    token_budget=budget,
                    trigger_ratio=ratio,
                    policy=spec,
                    metadata=meta,
                )
                await tx.save_context(ctx, created=True)
                return ctx, True
            # a tombstoned context takes no messages or compactions, but its settings
            # stay readable and settable (PUT is how clients open a context)
            before = (ctx.token_budget, ctx.trigger_ratio, ctx.policy, ctx.metadata)
            ctx.token_budget = budget if budget is not None else ctx.token_budget
            ctx.trigger_ratio = ratio if ratio is not None else ctx.trigger_ratio
            ctx.policy = spec if spec is not None else ctx.policy
            ctx.metadata = meta if meta is not None else ctx.metadata
            if (ctx.token_budget, ctx.trigger_ratio, ctx.policy, ctx.metadata) == before:
                return ctx, False
            ctx.updated_at = max(now, ctx.updated_at)
            await tx.save_context(ctx, created=False)
            return ctx, True

        ctx, changed = await self.store.run(context_id, op)
        if changed:
            self.bus.publish([Event(context_id, "config", ctx.version, {"context": ctx.to_json()})])
        return ctx

    async def get_context(self, context_id: str) -> ContextRecord:
        validate_context_id(context_id)
        ctx = await self.store.get_context(context_id)
        if ctx is None:
            raise ContextNotFound(context_id)
        return ctx

    async def delete_context(self, context_id: str) -> None:
        """Tombstone: history stays readable; appends and compactions answer 409."""
        validate_context_id(context_id)

        async def op(tx: Tx) -> Event | None:
            ctx = await tx.load_context()
            if ctx is None:
                raise ContextNotFound(context_id)
            if ctx.tombstoned:
                return None
            ctx.status = "tombstoned"
            ctx.version += 1
            ctx.updated_at = max(self._clock(), ctx.updated_at)
            event = Event(context_id, "tombstoned", ctx.version)
            await tx.insert_event(event)
            await tx.save_context(ctx, created=False)
            return event

        event = await self.store.run(context_id, op)
        if event is not None:
            self.bus.publish([event])

    async def update_metadata(self, context_id: str, metadata: object) -> ContextRecord:
        """Shallow-merge ``metadata`` into the context's metadata."""
        validate_context_id(context_id)
        if not isinstance(metadata, dict):
            raise ValidationError("metadata", "must be an object")
        patch = validate_metadata(metadata)

        async def op(tx: Tx) -> ContextRecord:
            ctx = await tx.load_context()
            if ctx is None:
                raise ContextNotFound(context_id)
            ctx.metadata = {**ctx.metadata, **patch}
            ctx.updated_at = max(self._clock(), ctx.updated_at)
            await tx.save_context(ctx, created=False)
            return ctx

        ctx = await self.store.run(context_id, op)
        self.bus.publish([Event(context_id, "config", ctx.version, {"context": ctx.to_json()})])
        return ctx

    async def list_contexts(
        self, limit: int = 100, cursor: str | None = None, *, tenant: str | None = None
    ) -> ContextPage:
        """Contexts, most recently updated first.

        ``tenant``: ``None`` lists every context, ``""`` the default tenant's
        (ids without ``/``), a name only ``{tenant}/...`` ids. A tenant's cursor
        holds its ids without the ``tenant/`` prefix.
        """
        limit = check_int(limit, "limit", 1)
        prefix = f"{tenant}/" if tenant else ""
        after = None
        if cursor:
            when, last_id = decode_cursor(cursor)
            if tenant is not None:
                validate_public_id(last_id, "cursor")
            after = (when, prefix + last_id)
        rows = await self.store.list_contexts(limit + 1, after, tenant)
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(page[-1].updated_at, page[-1].id[len(prefix) :])
        return ContextPage(page, next_cursor)

    # -- the log ------------------------------------------------------------

    async def append(
        self,
        context_id: str,
        message: object,
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append one message; returns its seq, the new version and its tokens."""
        messages = [Message.parse(message, "message")]
        return await append_messages(self, context_id, messages, False, if_version, idempotency_key)

    async def append_batch(
        self,
        context_id: str,
        messages: object,
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
        rewind_to_seq: int | None = None,
        usage: tuple[int, int] | None = None,
        reply_before_sync: bool = False,
    ) -> AppendResult:
        """Append several messages atomically, with consecutive seqs.

        ``rewind_to_seq``: the messages replace, in the LLM context, every log
        message from that seq on (an edited or regenerated turn). The log keeps
        them; only the window forgets them.

        ``usage``: ``(estimate, actual)``, a provider's prompt count for a prompt
        we estimated, learnt as ``record_usage`` does, in this same write and
        before the policy runs (one write and one policy run per proxied turn).
        It is not part of an ``idempotency_key``'s request: a retry whose
        estimate came out differently is the same append, and is replayed.

        ``reply_before_sync``: the result may come back before the write is
        committed, where the store can keep every later read in this process
        in order (see :meth:`Store.run` for what a crash or a failed commit
        then means); for a caller whose client does not wait on durability
        (the proxy's turn, which is answered even when storing it fails).
        """
        parsed = parse_messages(messages, "messages")
        rewind = None if rewind_to_seq is None else check_int(rewind_to_seq, "rewind_to_seq", 1)
        sample = None
        if usage is not None:
            if not isinstance(usage, (tuple, list)) or len(usage) != 2:
                raise ValidationError("usage", "must be a pair (estimate, actual)")
            sample = calibration_sample(*usage)
        return await append_messages(
            self,
            context_id,
            parsed,
            True,
            if_version,
            idempotency_key,
            rewind,
            sample,
            reply_before_sync=reply_before_sync,
        )

    async def tail(self, context_id: str, offset: int = 0, limit: int = 100) -> list[StoredMessage]:
        """The page ending ``offset`` messages before the newest, oldest first."""
        span = await self.tail_span(context_id, offset, limit)
        return [] if span is None else await self.read_log(context_id, *span)

    async def messages(
        self, context_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[StoredMessage]:
        """Forward paging: up to ``limit`` messages with ``seq > after_seq``."""
        span = await self.messages_span(context_id, after_seq, limit)
        return [] if span is None else await self.read_log(context_id, *span)

    async def tail_span(
        self, context_id: str, offset: int = 0, limit: int = 100
    ) -> tuple[int, int] | None:
        """The seqs ``(first, last)`` of :meth:`tail`'s page; None when it is empty.
        The log is append-only: the rows in a span never change, so a large page
        can be read in parts (:meth:`read_log`)."""
        offset = check_int(offset, "offset", 0)
        limit = check_int(limit, "limit", 1)
        ctx = await self.get_context(context_id)
        last = ctx.last_seq - offset
        return None if last < 1 else (max(1, last - limit + 1), last)

    async def messages_span(
        self, context_id: str, after_seq: int = 0, limit: int = 100
    ) -> tuple[int, int] | None:
        """The seqs ``(first, last)`` of :meth:`messages`' page; None when it is empty."""
        after_seq = check_int(after_seq, "after_seq", 0)
        limit = check_int(limit, "limit", 1)
        ctx = await self.get_context(context_id)
        if after_seq >= ctx.last_seq:
            return None
        return after_seq + 1, min(ctx.last_seq, after_seq + limit)

    async def read_log(
        self, context_id: str, first: int, last: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        """The log rows ``first..last`` (both included) that exist, oldest first;
        with ``max_bytes``, up to the row that brings their JSON to that size
        (see :meth:`Store.read_messages`)."""
        return await read_capped(self.store, context_id, first, last, max_bytes)

    # -- the LLM context ------------------------------------------------------

    @staticmethod
    def window_keeps_all(ctx: ContextRecord, pending_tokens: int, budget_tokens: int) -> bool:
        """Whether :meth:`window` of the snapshot ``ctx``, with pending messages
        of at most ``pending_tokens`` tokens (our count) and ``budget_tokens``,
        cuts nothing: it then holds the same messages whatever their exact
        counts up to that bound (a rewind only leaves out more)."""
        used = ctx.used_tokens_estimate + pending_tokens
        return calibrated(used, ctx.calibration) <= budget_tokens

    async def window(
        self,
        context_id: str,
        *,
        budget_tokens: int | None = None,
        if_version: int | None = None,
        pending: Sequence[object] = (),
        keep_pending: int | None = None,
        rewind_to_seq: int | None = None,
        snapshot: tuple[ContextRecord, Sequence[StoredMessage]] | None = None,
    ) -> Window:
        """The LLM context; ``budget_tokens`` cuts it to another budget for this call.

        ``pending`` messages (a turn about to be sent, not yet appended) join
        the end of the window; the newest ``keep_pending`` of them (default:
        all), the turn in flight, are never cut: older messages make room for
        them, with every guarantee kept, and older pending messages are cut
        like log rows. A pending tool result whose call the window no longer
        holds brings the call's log row back with it (see
        :meth:`_answer_pending`). ``rewind_to_seq`` leaves out log messages
        from that seq on, as ``append_batch(rewind_to_seq=)`` will once the
        pending turn is appended. ``snapshot``: the context row and its live
        rows, already read (see :meth:`read_turn`). Nothing is stored.
        """
        budget = None if budget_tokens is None else check_int(budget_tokens, "budget_tokens", 1)
        expected = None if if_version is None else check_int(if_version, "if_version", 0)
        keep = None if keep_pending is None else check_int(keep_pending, "keep_pending", 0)
        validate_context_id(context_id)
        extra = [Message.parse(m, f"pending[{i}]") for i, m in enumerate(pending)]
        counts = await self.tokens.count_messages(extra)
        found, rows = snapshot if snapshot is not None else await self.store.read_window(context_id)
        if found is None:
            raise ContextNotFound(context_id)
        ctx = found
        if expected is not None and expected != ctx.version:
            raise VersionConflict(expected, ctx.version)
        items = items_of(ctx, rows)
        used = ctx.used_tokens_estimate + sum(counts)
        end = ctx.last_seq  # the newest log row the pending turn follows
        if rewind_to_seq is not None:
            items = [item for item in items if item.from_seq < rewind_to_seq]
            used = sum(item.tokens for item in items) + sum(counts)
            end = min(end, rewind_to_seq - 1)
        news = [
            WindowItem(m.with_tokens(c), "live", ctx.last_seq + i, ctx.last_seq + i, False)
            for i, (m, c) in enumerate(zip(extra, counts, strict=True), start=1)
        ]
        keep_last = len(news) if keep is None else min(keep, len(news))
        answered = await self._answer_pending(context_id, ctx, items, news, keep_last, end)
        if answered is not None:  # rare: a call read back, or a result without one
            items, news, keep_last = answered
            used = sum(item.tokens for item in items) + sum(item.tokens for item in news)
        items.extend(news)
        limit = budget if budget is not None else ctx.token_budget
        if calibrated(used, ctx.calibration) > limit and (budget is not None or extra):
            items = fit(items, ctx.estimate_limit(limit), keep_last=keep_last)
            used = sum(item.tokens for item in items)
        shown = calibrated(used, ctx.calibration)
        level = trigger_level(limit, ctx.trigger_ratio)
        return Window(ctx.version, items, shown, shown > level, used)

    async def _answer_pending(
        self,
        context_id: str,
        ctx: ContextRecord,
        items: list[WindowItem],
        news: list[WindowItem],
        keep_last: int,
        end: int,
    ) -> tuple[list[WindowItem], list[WindowItem], int] | None:
        """The window's items and the pending ones (and how many of those are
        never cut) when a pending tool result answers a call neither the
        window nor an earlier pending message holds; None when there is none
        (the common case, settled without a read).

        A compaction may have cut the call (say, one larger than the whole
        budget) before its result came. The log holds it, as one of its newest
        rows before the window's live rows (a provider wants a result right
        after its call): the row before them (``end`` or older) is read, and
        only when it does not hold every such call, up to ``_CALL_SEARCH``
        more. From the oldest row holding one of these calls on, the rows
        join the window in log order, before its live rows (replacing a
        rewritten copy from an earlier compaction): the pending result is sent
        with its call, since a result sent alone is refused by every provider.
        A result whose call is not found there is left out of what is sent
        (the window never holds an orphan result); the log still stores it.
        """
        wanted = calls_answered(news)
        if not wanted:
            return None
        for item in reversed(items):  # the call is usually the window's newest row
            wanted -= item.refs[0]
            if not wanted:
                return None
        newest = min(end, ctx.live_from_seq - 1)
        recovered: list[StoredMessage] = []
        if newest >= 1:
            rows = await self.store.read_messages(context_id, newest, newest)
            held = parts_refs(rows[0].parts)[0] if rows else frozenset()
            if not wanted <= held and newest > 1:
                older = max(1, newest - _CALL_SEARCH)
                rows = [*await self.store.read_messages(context_id, older, newest - 1), *rows]
            first = None
            for index in range(len(rows) - 1, -1, -1):
                calls = parts_refs(rows[index].parts)[0] & wanted
                if calls:
                    wanted -= calls
                    first = index
                    if not wanted:
                        break
            if first is not None:
                recovered = rows[first:]
        out = items
        if recovered:
            low = recovered[0].seq
            # rewritten copies of these rows (a compaction's) give way to the rows
            kept = [i for i in items if i.is_row or i.kind != "live" or i.from_seq < low]
            at = next((k for k, item in enumerate(kept) if item.is_row), len(kept))
            out = [*kept[:at], *map(WindowItem.of_row, recovered), *kept[at:]]
            # the rows come as logged: without the orphan results a compaction took out
            out = drop_orphan_results(out)[0]
        if not wanted:
            return out, news, keep_last
        tail_from = len(news) - keep_last
        trimmed: list[WindowItem] = []
        kept_last = 0
        made: set[str] = set()  # a result after a pending call of its id answers that call
        for index, item in enumerate(news):
            left = without_results(item, wanted - made)
            made |= item.refs[0]
            if left is not None:
                trimmed.append(left)
                kept_last += index >= tail_from
        return out, trimmed, kept_last

    async def read_turn(
        self, context_id: str, newest: int, oldest: int
    ) -> tuple[ContextRecord, list[StoredMessage], list[StoredMessage]]:
        """The context, its live rows, and the newest ``newest`` plus first
        ``oldest`` log rows, in as few store reads as possible (typically one).

        For a caller that aligns a request with the log and then builds the
        window from the same snapshot (``window(snapshot=...)``).
        """
        validate_context_id(context_id)
        found, rows = await self.store.read_window(context_id, tail=newest)
        if found is None:
            raise ContextNotFound(context_id)
        ctx = found
        if ctx.last_seq == 0:
            return ctx, [], []
        tail_from = max(1, ctx.last_seq - newest + 1)
        live = [row for row in rows if row.seq >= ctx.live_from_seq]
        history = [row for row in rows if row.seq >= tail_from]
        head_to = min(oldest, tail_from - 1)
        if head_to >= 1:
            if rows and rows[0].seq == 1:
                head = [row for row in rows if row.seq <= head_to]
            else:
                head = await self.store.read_messages(context_id, 1, head_to)
            history = head + history
        return ctx, live, history

    async def compact(
        self,
        context_id: str,
        replacement: object,
        *,
        if_version: int | None = None,
        up_to_seq: int | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Replace the LLM context (or its part covering seqs <= ``up_to_seq``).

        The log is untouched. Returns the new version.
        """
        return await summaries.compact(
            self, context_id, replacement, if_version, up_to_seq, idempotency_key
        )

    # -- summaries, leases, calibration ----------------------------------------

    async def apply_summary(
        self,
        plan: FoldPlan,
        text: str,
        *,
        provider: str,
        model: str,
        prompt_sha256: str,
        token_count: int | None = None,
        lease: tuple[str, float] | None = None,
    ) -> SummaryRecord | None:
        """Swap a summary of what ``plan`` folded into the window, and record it.

        Like a compaction with ``up_to_seq = plan.up_to_seq``: pinned system
        messages and everything newer stay. None when the window moved on in a
        way that makes the plan stale (see ``folding.swap_items``), the context
        is gone or no longer ``summarize``, or ``lease = (holder, ttl)`` is no
        longer held (it is renewed otherwise).
        """
        return await summaries.apply_summary(
            self, plan, text, provider, model, prompt_sha256, token_count, lease
        )

    async def list_summaries(
        self, context_id: str, limit: int = 100, cursor: str | None = None
    ) -> SummaryPage:
        """The context's summary records, newest first."""
        limit = check_int(limit, "limit", 1)
        before = decode_version_cursor(cursor) if cursor else None
        await self.get_context(context_id)
        records = await self.store.list_summaries(context_id, limit + 1, before)
        page = records[:limit]
        next_cursor = encode_version_cursor(page[-1].version) if len(records) > limit else None
        return SummaryPage(page, next_cursor)

    async def take_lease(self, context_id: str, holder: str, ttl: float) -> bool:
        """Take or renew the context's lease for ``ttl`` seconds; False while another holds it."""
        validate_context_id(context_id)

        async def op(tx: Tx) -> bool:
            return await tx.take_lease(holder, ttl)

        return await self.store.run(context_id, op)

    async def drop_lease(self, context_id: str, holder: str) -> None:
        async def op(tx: Tx) -> None:
            await tx.drop_lease(holder)

        await self.store.run(context_id, op)

    async def record_usage(self, context_id: str, estimate: int, actual: int) -> float | None:
        """Learn from a provider's prompt token count: ``actual`` for a prompt we
        estimated at ``estimate``. Returns the context's new calibration factor.

        The factor is an EMA of ``actual / estimate`` (the first samples average,
        later ones weigh ``CALIBRATION_ALPHA``), clamped to ``CALIBRATION_RANGE``
        (:mod:`.calibration`);
        ``used_tokens`` is the estimate times the factor. The policy then runs,
        so the budget holds against the corrected count.

        ``append_batch(..., usage=(estimate, actual))`` does the same in the
        append's own write (what the proxy does with each stored turn).
        """
        validate_context_id(context_id)
        sample = calibration_sample(estimate, actual)
        if sample is None:
            return None

        async def op(tx: Tx) -> tuple[float | None, list[Event], bool]:
            ctx = await tx.load_context()
            if ctx is None or ctx.tombstoned:
                return None, [], False
            calibrate(ctx, sample)
            compaction = await run_policy(tx, ctx, [])
            await tx.save_context(ctx, created=False)
            events = [] if compaction is None else [compaction]
            return ctx.calibration, events, wants_summary(ctx, trimmed=compaction is not None)

        factor, events, wake = await self.store.run(context_id, op)
        self.bus.publish(events)
        if wake:
            self._wake(context_id)
        return factor
