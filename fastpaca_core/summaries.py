"""Swapping a summary into the window: the bodies of :meth:`Engine.compact`
(replacement messages the caller wrote) and :meth:`Engine.apply_summary` (the
summariser's, checked against the window it was planned on).

Each is one operation over the engine's store: the log is untouched, the
window's older part becomes the summary (``window.apply_items``), a
``compaction`` event is stored and published after commit. The public
methods, with their documentation, stay on :class:`~fastpaca_core.Engine`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .appends import admit_keyed, remember
from .compaction import run_policy
from .errors import ValidationError, VersionConflict
from .events import Event
from .folding import FoldPlan, summary_message, swap_items
from .model import Message, SummaryRecord, validate_context_id
from .policies.open_calls import open_calls
from .policies.summarize import Summarize
from .results import check_int, check_key, check_totals, request_hash
from .stores.base import Tx
from .toolcalls import tool_refs
from .window import WindowItem, apply_items, items_of, valid_cuts

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["apply_summary", "compact"]


async def compact(
    engine: Engine,
    context_id: str,
    replacement: object,
    if_version: int | None,
    up_to_seq: int | None,
    idempotency_key: str | None,
) -> int:
    """See :meth:`Engine.compact`."""
    validate_context_id(context_id)
    if not isinstance(replacement, list):
        raise ValidationError("replacement", "must be a list of messages")
    messages = [Message.parse(m, f"replacement[{i}]") for i, m in enumerate(replacement)]
    expected = None if if_version is None else check_int(if_version, "if_version", 0)
    upto = None if up_to_seq is None else check_int(up_to_seq, "up_to_seq", 1)
    key = check_key(idempotency_key)
    counts = await engine.tokens.count_messages(messages)
    messages = [m.with_tokens(c) for m, c in zip(messages, counts, strict=True)]
    digest = ""
    if key is not None:
        digest = request_hash(
            {
                "op": "compact",
                "replacement": [m.to_json() for m in messages],
                "if_version": expected,
                "up_to_seq": upto,
            }
        )
    now = engine._clock()

    async def op(tx: Tx) -> tuple[int, Event | None]:
        ctx, replay = await admit_keyed(tx, context_id, key, digest)
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
        _refuse_open_calls(items, len(replaced), messages, upto)
        cover_from = min((item.from_seq for item in replaced), default=min(1, cover_to))
        summary = [WindowItem(m, "summary", cover_from, cover_to, False) for m in messages]
        apply_items(ctx, summary + kept)
        check_totals(ctx, "replacement")
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
            await remember(tx, key, digest, now, {"version": ctx.version})
        return ctx.version, event

    version, event = await engine.store.run(context_id, op)
    if event is not None:
        engine.bus.publish([event])
    return version


def _refuse_open_calls(
    items: list[WindowItem], cut: int, replacement: list[Message], upto: int | None
) -> None:
    """Refuse to replace ``items[:cut]`` when it holds a tool call still waiting
    for its result (and the replacement does not carry the call on): the
    result would arrive with no call before it."""
    carried: set[str] = set()
    for message in replacement:
        carried |= tool_refs(message)[0]
    covered = [
        (index, call_id)
        for call_id, index in open_calls(items).items()
        if index < cut and call_id not in carried
    ]
    if not covered:
        return
    index, call_id = min(covered)
    item = items[index]
    if item.kind == "live":
        where = f"the tool call {call_id!r} at seq {item.from_seq}"
    else:
        where = f"the tool call {call_id!r} in the summary of seqs {item.from_seq}-{item.to_seq}"
    advice = "append its result first"
    cuts = valid_cuts(items)
    before = max(k for k in range(index + 1) if cuts[k])  # keeps every pair whole
    if before > 0:
        advice += f", or compact only what is before it (up_to_seq {items[before - 1].to_seq})"
    raise ValidationError(
        "replacement" if upto is None else "up_to_seq",
        f"would replace {where}, which has no result yet (its result would arrive without "
        f"its call); {advice}",
    )


async def apply_summary(
    engine: Engine,
    plan: FoldPlan,
    text: str,
    provider: str,
    model: str,
    prompt_sha256: str,
    token_count: int | None,
    lease: tuple[str, float] | None,
) -> SummaryRecord | None:
    """See :meth:`Engine.apply_summary`."""
    message = summary_message(plan, text, provider, model)
    counted = (await engine.tokens.count_messages([message]))[0]
    message = message.with_tokens(counted)
    now = engine._clock()

    async def op(tx: Tx) -> tuple[SummaryRecord | None, list[Event]]:
        ctx = await tx.load_context()
        if ctx is None or ctx.tombstoned or ctx.policy.strategy != Summarize.name:
            return None, []
        if lease is not None and not await tx.take_lease(*lease):
            return None, []
        rows = await tx.read_messages(ctx.live_from_seq, ctx.last_seq)
        items = swap_items(plan, items_of(ctx, rows), message)
        if items is None:
            return None, []
        apply_items(ctx, items)
        check_totals(ctx, "summary")
        ctx.version += 1
        ctx.updated_at = max(now, ctx.updated_at)
        covered = {"from_seq": plan.cover_from, "to_seq": plan.up_to_seq}
        events = [Event(ctx.id, "compaction", ctx.version, {"range": covered})]
        await tx.insert_event(events[0])
        record = SummaryRecord(
            version=ctx.version,
            from_seq=plan.cover_from,
            to_seq=plan.up_to_seq,
            provider=provider,
            model=model,
            prompt_sha256=prompt_sha256,
            token_count=counted if token_count is None else token_count,
            created_at=now,
            message=message,
        )
        await tx.insert_summary(record)
        trimmed = await run_policy(tx, ctx, [])  # the budget still holds
        if trimmed is not None:
            events.append(trimmed)
        await tx.save_context(ctx, created=False)
        return record, events

    record, events = await engine.store.run(plan.context_id, op)
    engine.bus.publish(events)
    return record
