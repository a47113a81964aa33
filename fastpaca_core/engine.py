"""The engine: every operation on contexts, each one atomic, over a Store.

Appends and context reads cost the same whatever the length of the history:
an append is one insert and one update of the context row; a read is one
range scan of the live window; ``used_tokens`` is arithmetic on running totals.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import (
    ContextNotFound,
    ContextTombstoned,
    IdempotencyKeyReused,
    ValidationError,
    VersionConflict,
)
from .events import Event, EventBus
from .jsonutil import dumps
from .model import (
    DEFAULT_POLICY,
    DEFAULT_TOKEN_BUDGET,
    DEFAULT_TRIGGER_RATIO,
    MAX_INT,
    ContextRecord,
    Message,
    StoredMessage,
    format_time,
    parse_messages,
    utcnow,
    validate_context_id,
    validate_metadata,
    validate_token_budget,
    validate_trigger_ratio,
)
from .policies import get_policy, parse_policy
from .stores.base import IdempotencyRecord, Store, Tx
from .tokens import TokenCounter
from .toolcalls import tool_refs
from .window import WindowItem, apply_items, fit, items_of, segments_of, valid_cuts

__all__ = ["AppendResult", "ContextPage", "Engine", "Window"]

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class AppendResult:
    version: int
    seqs: list[int]
    token_estimates: list[int]
    replayed: bool = False  # True when an idempotent retry returned the first result

    def to_json(self, batch: bool = False) -> dict[str, Any]:
        if batch:
            return {
                "version": self.version,
                "messages": [
                    {"seq": s, "token_estimate": t}
                    for s, t in zip(self.seqs, self.token_estimates, strict=True)
                ],
            }
        return {
            "seq": self.seqs[0],
            "version": self.version,
            "token_estimate": self.token_estimates[0],
        }


@dataclass(frozen=True, slots=True)
class Window:
    """The LLM context of one context at one version."""

    version: int
    items: list[WindowItem]
    used_tokens: int
    needs_compaction: bool

    @property
    def messages(self) -> list[Message]:
        return [item.message for item in self.items]

    @property
    def segments(self) -> list[dict[str, Any]]:
        return segments_of(self.items)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "messages": [item.to_json() for item in self.items],
            "used_tokens": self.used_tokens,
            "needs_compaction": self.needs_compaction,
            "segments": self.segments,
        }


@dataclass(frozen=True, slots=True)
class ContextPage:
    contexts: list[ContextRecord]
    next_cursor: str | None


def _check_int(value: object, field_name: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(field_name, "must be an integer")
    if value < minimum or value > 2**63 - 1:
        raise ValidationError(field_name, f"must be an integer >= {minimum}")
    return value


def _check_totals(ctx: ContextRecord, field_name: str) -> None:
    """Token totals are stored as 64-bit integers: refuse what would overflow them."""
    if ctx.total_tokens > MAX_INT or ctx.used_tokens > MAX_INT:
        raise ValidationError(field_name, "would take the context's token total past 2**63-1")


def _check_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationError("idempotency_key", f"must be 1-{MAX_KEY_LENGTH} characters")
    return key


def _request_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(dumps(payload)).hexdigest()


def _encode_cursor(ctx: ContextRecord) -> str:
    raw = f"{format_time(ctx.updated_at)}|{ctx.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, context_id = raw.split("|", 1)
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=utcnow().tzinfo)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValidationError("cursor", "is not a cursor this server issued") from exc
    return when, validate_context_id(context_id, "cursor")


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
                ctx = ContextRecord(
                    id=context_id,
                    token_budget=budget or DEFAULT_TOKEN_BUDGET,
                    trigger_ratio=ratio or DEFAULT_TRIGGER_RATIO,
                    policy=spec or DEFAULT_POLICY,
                    metadata=meta or {},
                    status="active",
                    version=0,
                    last_seq=0,
                    total_tokens=0,
                    prefix=[],
                    live_from_seq=1,
                    live_base_tokens=0,
                    created_at=now,
                    updated_at=now,
                )
                await tx.save_context(ctx, created=True)
                return ctx, True
            if ctx.tombstoned:
                raise ContextTombstoned(context_id)
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

    async def list_contexts(self, limit: int = 100, cursor: str | None = None) -> ContextPage:
        """Contexts, most recently updated first."""
        limit = _check_int(limit, "limit", 1)
        after = _decode_cursor(cursor) if cursor else None
        rows = await self.store.list_contexts(limit + 1, after)
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
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
        return await self._append(context_id, messages, False, if_version, idempotency_key)

    async def append_batch(
        self,
        context_id: str,
        messages: object,
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
        rewind_to_seq: int | None = None,
    ) -> AppendResult:
        """Append several messages atomically, with consecutive seqs.

        ``rewind_to_seq``: the messages replace, in the LLM context, every log
        message from that seq on (an edited or regenerated turn). The log keeps
        them; only the window forgets them.
        """
        parsed = parse_messages(messages, "messages")
        rewind = None if rewind_to_seq is None else _check_int(rewind_to_seq, "rewind_to_seq", 1)
        return await self._append(context_id, parsed, True, if_version, idempotency_key, rewind)

    async def _append(
        self,
        context_id: str,
        messages: list[Message],
        batch: bool,
        if_version: object,
        idempotency_key: object,
        rewind_to_seq: int | None = None,
    ) -> AppendResult:
        validate_context_id(context_id)
        expected = None if if_version is None else _check_int(if_version, "if_version", 0)
        key = _check_key(idempotency_key)
        counts = await self.tokens.count_messages(messages)
        request_hash = ""
        if key is not None:
            request_hash = _request_hash(
                {
                    "op": "append_batch" if batch else "append",
                    "messages": [m.to_json() for m in messages],
                    "if_version": expected,
                    "rewind_to_seq": rewind_to_seq,
                }
            )
        now = self._clock()

        async def op(tx: Tx) -> tuple[AppendResult, list[Event]]:
            ctx = await self._writable(tx, context_id)
            if key is not None:
                replay = await self._replay(tx, key, request_hash)
                if replay is not None:
                    stored = replay["result"]
                    return AppendResult(
                        stored["version"], stored["seqs"], stored["token_estimates"], True
                    ), []
            if expected is not None and expected != ctx.version:
                raise VersionConflict(expected, ctx.version)
            if rewind_to_seq is not None and rewind_to_seq > ctx.last_seq + 1:
                raise ValidationError(
                    "rewind_to_seq", f"is beyond the next seq ({ctx.last_seq + 1})"
                )
            rows: list[StoredMessage] = []
            for message, count in zip(messages, counts, strict=True):
                ctx.last_seq += 1
                ctx.version += 1
                ctx.total_tokens += count
                rows.append(
                    StoredMessage(
                        seq=ctx.last_seq,
                        role=message.role,
                        parts=message.parts,
                        metadata=message.metadata,
                        token_count=count,
                        cum_tokens=ctx.total_tokens,
                        version=ctx.version,
                        inserted_at=now,
                    )
                )
            _check_totals(ctx, "message.token_count")
            ctx.updated_at = max(now, ctx.updated_at)
            await tx.insert_messages(rows)
            events = [
                Event(
                    context_id, "message", row.version, {"seq": row.seq, "message": row.to_json()}
                )
                for row in rows
            ]
            if rewind_to_seq is not None and rewind_to_seq <= rows[0].seq - 1:
                events.append(await self._rewind(tx, ctx, rows, rewind_to_seq))
            compaction = await self._run_policy(tx, ctx, rows)
            if compaction is not None:
                events.append(compaction)
            await tx.save_context(ctx, created=False)
            result = AppendResult(ctx.version, [r.seq for r in rows], counts)
            if key is not None:
                await self._remember(tx, key, request_hash, now, result)
            return result, events

        result, events = await self.store.run(context_id, op)
        self.bus.publish(events)
        return result

    async def tail(self, context_id: str, offset: int = 0, limit: int = 100) -> list[StoredMessage]:
        """The page ending ``offset`` messages before the newest, oldest first."""
        offset = _check_int(offset, "offset", 0)
        limit = _check_int(limit, "limit", 1)
        ctx = await self.get_context(context_id)
        to_seq = ctx.last_seq - offset
        if to_seq < 1:
            return []
        return await self.store.read_messages(context_id, max(1, to_seq - limit + 1), to_seq)

    async def messages(
        self, context_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[StoredMessage]:
        """Forward paging: up to ``limit`` messages with ``seq > after_seq``."""
        after_seq = _check_int(after_seq, "after_seq", 0)
        limit = _check_int(limit, "limit", 1)
        ctx = await self.get_context(context_id)
        if after_seq >= ctx.last_seq:
            return []
        to_seq = min(ctx.last_seq, after_seq + limit)
        return await self.store.read_messages(context_id, after_seq + 1, to_seq)

    # -- the LLM context ------------------------------------------------------

    async def window(
        self,
        context_id: str,
        *,
        budget_tokens: int | None = None,
        if_version: int | None = None,
        pending: Sequence[object] = (),
    ) -> Window:
        """The LLM context; ``budget_tokens`` cuts it to another budget for this call.

        ``pending`` messages (a turn about to be sent, not yet appended) join
        the end of the window and are never cut; older messages make room for
        them, with every guarantee kept. Nothing is stored.
        """
        budget = None if budget_tokens is None else _check_int(budget_tokens, "budget_tokens", 1)
        expected = None if if_version is None else _check_int(if_version, "if_version", 0)
        validate_context_id(context_id)
        extra = [Message.parse(m, f"pending[{i}]") for i, m in enumerate(pending)]
        counts = await self.tokens.count_messages(extra)
        ctx, rows = await self.store.read_window(context_id)
        if ctx is None:
            raise ContextNotFound(context_id)
        if expected is not None and expected != ctx.version:
            raise VersionConflict(expected, ctx.version)
        items = items_of(ctx, rows)
        items.extend(
            WindowItem(m.with_tokens(c), "live", ctx.last_seq + i, ctx.last_seq + i, False)
            for i, (m, c) in enumerate(zip(extra, counts, strict=True), start=1)
        )
        used = ctx.used_tokens + sum(counts)
        limit = budget if budget is not None else ctx.token_budget
        if used > limit and (budget is not None or extra):
            items = fit(items, limit, keep_last=len(extra))
            used = sum(item.tokens for item in items)
        return Window(ctx.version, items, used, used > limit * ctx.trigger_ratio)

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
        validate_context_id(context_id)
        if not isinstance(replacement, list):
            raise ValidationError("replacement", "must be a list of messages")
        messages = [Message.parse(m, f"replacement[{i}]") for i, m in enumerate(replacement)]
        expected = None if if_version is None else _check_int(if_version, "if_version", 0)
        upto = None if up_to_seq is None else _check_int(up_to_seq, "up_to_seq", 1)
        key = _check_key(idempotency_key)
        counts = await self.tokens.count_messages(messages)
        messages = [m.with_tokens(c) for m, c in zip(messages, counts, strict=True)]
        request_hash = ""
        if key is not None:
            request_hash = _request_hash(
                {
                    "op": "compact",
                    "replacement": [m.to_json() for m in messages],
                    "if_version": expected,
                    "up_to_seq": upto,
                }
            )
        now = self._clock()

        async def op(tx: Tx) -> tuple[int, Event | None]:
            ctx = await self._writable(tx, context_id)
            if key is not None:
                replay = await self._replay(tx, key, request_hash)
                if replay is not None:
                    return int(replay["result"]["version"]), None
            if expected is not None and expected != ctx.version:
                raise VersionConflict(expected, ctx.version)
            rows = await tx.read_messages(ctx.live_from_seq, ctx.last_seq)
            items = items_of(ctx, rows)
            if upto is None:
                replaced, kept = items, []
                cover_to = ctx.last_seq
            else:
                if upto > ctx.last_seq:
                    raise ValidationError(
                        "up_to_seq", f"is beyond the newest message (last_seq {ctx.last_seq})"
                    )
                cut = sum(1 for item in items if item.from_seq <= upto)
                if any(item.from_seq <= upto for item in items[cut:]):
                    raise ValidationError("up_to_seq", "does not fall between window segments")
                if not valid_cuts(items)[cut]:
                    raise ValidationError(
                        "up_to_seq", f"would separate a tool call from its result at seq {upto}"
                    )
                replaced, kept = items[:cut], items[cut:]
                cover_to = max([upto, *(item.to_seq for item in replaced)])
            cover_from = min((item.from_seq for item in replaced), default=min(1, cover_to))
            summary = [WindowItem(m, "summary", cover_from, cover_to, False) for m in messages]
            apply_items(ctx, summary + kept)
            _check_totals(ctx, "replacement")
            ctx.version += 1
            ctx.updated_at = max(now, ctx.updated_at)
            event = Event(
                context_id,
                "compaction",
                ctx.version,
                {"range": {"from_seq": cover_from, "to_seq": cover_to}},
            )
            await tx.insert_event(event)
            await tx.save_context(ctx, created=False)
            if key is not None:
                await self._remember(tx, key, request_hash, now, {"version": ctx.version})
            return ctx.version, event

        version, event = await self.store.run(context_id, op)
        if event is not None:
            self.bus.publish([event])
        return version

    # -- helpers run inside an operation ---------------------------------------

    @staticmethod
    async def _writable(tx: Tx, context_id: str) -> ContextRecord:
        ctx = await tx.load_context()
        if ctx is None:
            raise ContextNotFound(context_id)
        if ctx.tombstoned:
            raise ContextTombstoned(context_id)
        return ctx

    @staticmethod
    async def _replay(tx: Tx, key: str, request_hash: str) -> dict[str, Any] | None:
        record = await tx.get_idempotency(key)
        if record is None:
            return None
        if record.request_hash != request_hash:
            raise IdempotencyKeyReused(key)
        return record.response

    @staticmethod
    async def _remember(
        tx: Tx, key: str, request_hash: str, now: datetime, result: AppendResult | dict[str, Any]
    ) -> None:
        if isinstance(result, AppendResult):
            body: dict[str, Any] = {
                "version": result.version,
                "seqs": result.seqs,
                "token_estimates": result.token_estimates,
            }
        else:
            body = result
        await tx.put_idempotency(IdempotencyRecord(key, request_hash, {"result": body}, now))

    @staticmethod
    async def _rewind(
        tx: Tx, ctx: ContextRecord, new_rows: Sequence[StoredMessage], rewind_to: int
    ) -> Event:
        """Drop log messages ``rewind_to..`` (before ``new_rows``) from the window."""
        old_last = new_rows[0].seq - 1
        rows = await tx.read_messages(ctx.live_from_seq, old_last)
        items = items_of(ctx, [*rows, *new_rows])
        cut = sum(1 for item in items if item.from_seq < rewind_to)
        if not valid_cuts(items[: len(items) - len(new_rows)])[cut]:
            raise ValidationError(
                "rewind_to_seq", f"would separate a tool call from its result at seq {rewind_to}"
            )
        kept = items[:cut] + items[len(items) - len(new_rows) :]
        apply_items(ctx, kept)
        ctx.version += 1
        event = Event(
            ctx.id,
            "compaction",
            ctx.version,
            {"range": {"from_seq": rewind_to, "to_seq": old_last}},
        )
        await tx.insert_event(event)
        return event

    async def _run_policy(
        self, tx: Tx, ctx: ContextRecord, new_rows: Sequence[StoredMessage]
    ) -> Event | None:
        policy = get_policy(ctx.policy.strategy)
        due = policy.should_run(ctx, ctx.policy.config)
        # A result whose call an earlier compaction cut away (a call bigger than the
        # budget, say) would sit in the window as an orphan: repair that too.
        answered: set[str] = set()
        if policy.compacts and (ctx.prefix or ctx.live_from_seq > 1):
            for row in new_rows:
                answered |= tool_refs(row.as_message())[1]
        if not due and not answered:
            return None
        first_new = new_rows[0].seq if new_rows else ctx.last_seq + 1
        rows: list[StoredMessage] = []
        if ctx.live_from_seq < first_new:
            rows = await tx.read_messages(ctx.live_from_seq, first_new - 1)
        rows.extend(row for row in new_rows if row.seq >= ctx.live_from_seq)
        items = items_of(ctx, rows)
        if not due:
            calls: set[str] = set()
            for item in items:
                calls |= tool_refs(item.message)[0]
            if answered <= calls:
                return None
        result = policy.compact(items, ctx, ctx.policy.config)
        kept = {id(item) for item in result}
        original = {id(item) for item in items}
        gone = [item for item in items if id(item) not in kept]
        rewritten = [item for item in result if id(item) not in original]
        if not gone and not rewritten:
            return None
        touched = gone + rewritten
        apply_items(ctx, result)
        ctx.version += 1
        event = Event(
            ctx.id,
            "compaction",
            ctx.version,
            {
                "range": {
                    "from_seq": min(item.from_seq for item in touched),
                    "to_seq": max(item.to_seq for item in touched),
                }
            },
        )
        await tx.insert_event(event)
        return event
