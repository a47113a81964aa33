"""Folding the older part of a window into a summary: the plan, and the swap check.

The summariser plans on a snapshot of the window, with no lock held while the
LLM writes; the engine swaps the summary in later, in one operation, after
checking that the window still agrees with the snapshot where it matters
(:func:`swap_items`).

What is folded (:func:`plan_fold`): everything but the pinned leading system
messages and the newest ``keep_last`` messages, the boundary moved earlier to
a valid cut so that no tool call is separated from its result, and to before
any call still waiting for its result (folded away, the call would be missing
when its result arrives). A previous
summary in that part is folded in as text, and log messages that trimming
dropped between it (or, before any summary, the pinned system messages) and
the live messages, or around a pinned user request (while the summariser was
slow or down), are read back from the log, so the new summary's
``from_seq..to_seq`` has no holes; a pinned user request is folded like the
other messages. One fold takes at most ``max_tokens`` of input; a longer
backlog is folded oldest first over several rounds (``FoldPlan.partial``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .model import ContextRecord, Message, StoredMessage
from .policies.open_calls import open_calls
from .window import WindowItem, items_of, valid_cuts

__all__ = [
    "SUMMARY_METADATA_KEY",
    "Entry",
    "FoldPlan",
    "item_key",
    "message_text",
    "plan_fold",
    "summary_message",
    "swap_items",
]

Key = tuple[str, int, int]
ReadLog = Callable[[int, int], Awaitable[list[StoredMessage]]]
SUMMARY_METADATA_KEY = "fastpaca_summary"


def item_key(item: WindowItem) -> Key:
    return (item.kind, item.from_seq, item.to_seq)


_HEADING = "Summary of the earlier conversation"


def message_text(message: Message) -> str:
    """The text of a message; for a summary of ours, without its heading line."""
    text = "\n".join(
        p["text"]
        for p in message.parts
        if p.get("type") == "text" and isinstance(p.get("text"), str)
    )
    if SUMMARY_METADATA_KEY in message.metadata and text.startswith(_HEADING):
        text = text.partition("\n")[2]
    return text


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of the transcript: its log seq and content."""

    seq: int
    message: Message


@dataclass(frozen=True, slots=True)
class FoldPlan:
    """What one summarisation folds, and the snapshot it was planned on."""

    context_id: str
    version: int  # the snapshot's version
    last_seq: int  # the snapshot's last_seq
    cover_from: int  # the new summary stands for cover_from..up_to_seq
    up_to_seq: int
    previous: tuple[str, ...]  # texts of the summaries folded in
    entries: tuple[Entry, ...]  # messages folded in, oldest first
    snapshot: tuple[Key, ...]  # the snapshot's items after the pinned ones
    partial: bool  # a backlog remains for another round
    budget: int = 0  # the most tokens of transcript the entries may take (0: no limit)


def _pinned(items: Sequence[WindowItem], before: int | None = None) -> int:
    """How many leading items are pinned system messages: the log's own leading
    ones (log copies of seqs 1, 2, ... with no gap; not summaries).

    A system message from further on in the log that trimming brought to the
    front (the messages before it cut) is not pinned: those messages are read
    back and folded, and it with them, so that nothing is left out of both the
    window and the summary, and the segments stay in seq order.
    """
    count = 0
    for item in items:
        if item.kind != "live" or item.message.role != "system" or item.from_seq != count + 1:
            break
        if before is not None and item.from_seq >= before:
            break
        count += 1
    return count


_PAGE = 256  # log rows read at a time


def _enough(units: Sequence[WindowItem], total: int, budget: int) -> bool:
    """Whether ``units`` already hold more than one fold takes (``budget``
    tokens), and no call among them waits for a result further on: reading on
    could not change which of them the fold takes. A call whose result is
    still unread holds the reading for at most another ``budget`` tokens."""
    if total <= budget:
        return False
    return total > 2 * budget or not open_calls(units)


def _pick(units: Sequence[WindowItem], budget: int) -> int:
    """How many of ``units`` one fold takes: all, or the most that fit at a valid cut."""
    if sum(unit.tokens for unit in units) <= budget:
        return len(units)
    cuts = valid_cuts(units)
    best = 0
    total = 0
    for k in range(1, len(units) + 1):
        total += units[k - 1].tokens
        if total > budget:
            break
        if cuts[k]:
            best = k
    if best == 0:  # the oldest group alone is larger: take it (the transcript is clipped)
        best = next(k for k in range(1, len(units) + 1) if cuts[k])
    return best


async def plan_fold(
    ctx: ContextRecord,
    rows: Sequence[StoredMessage],
    *,
    keep_last: int,
    max_tokens: int,
    read_log: ReadLog,
) -> FoldPlan | None:
    """The fold for the window ``ctx`` + ``rows``, or None when there is nothing to fold."""
    items = items_of(ctx, rows)
    rest = items[_pinned(items) :]
    if len(rest) <= keep_last:
        return None
    cuts = valid_cuts(rest)
    # a call still waiting for its result stays live: its result will need it
    end = min([len(rest) - keep_last, *open_calls(rest).values()])
    cut = max(k for k in range(end + 1) if cuts[k])
    if cut == 0:
        return None
    fold = rest[:cut]
    boundary = rest[cut] if cut < len(rest) else None
    summaries = [item for item in fold if item.kind == "summary"]
    previous_to = max((item.to_seq for item in summaries), default=None)
    lives = [item for item in fold if item.kind == "live"]
    # live messages older than the previous summary (unusual), then the newer ones
    early = [i for i in lives if previous_to is not None and i.to_seq <= previous_to]
    later = [i for i in lives if previous_to is None or i.to_seq > previous_to]
    budget = max(max_tokens - sum(item.tokens for item in summaries), max_tokens // 4, 1)
    units: list[WindowItem] = list(early)
    # messages trimmed away before the live ones: after the previous summary,
    # or (before any summary) after the pinned system messages; and around a
    # pinned user request. Read a page at a time, and only as far as this fold
    # can take: a backlog is the whole history trimming left behind.
    if previous_to is not None:
        expected = previous_to + 1
    else:
        expected = max((item.to_seq for item in items[: len(items) - len(rest)]), default=0) + 1
    total = sum(item.tokens for item in units)
    more = False
    for item in [*later, *([] if boundary is None else [boundary])]:
        if item.kind == "live" and item.from_seq > expected:
            start = expected
            while start < item.from_seq and not (more := _enough(units, total, budget)):
                stop = min(item.from_seq - 1, start + _PAGE - 1)
                for row in await read_log(start, stop):
                    units.append(WindowItem.of_row(row))
                    total += units[-1].tokens
                start = stop + 1
        if more or (more := item is not boundary and _enough(units, total, budget)):
            break
        if item is not boundary:
            units.append(item)
            total += item.tokens
        expected = max(expected, item.to_seq + 1)
    if not units:
        return None
    taken = units[: _pick(units, budget)]
    return FoldPlan(
        context_id=ctx.id,
        version=ctx.version,
        last_seq=ctx.last_seq,
        cover_from=min(item.from_seq for item in [*summaries, *taken]),
        up_to_seq=taken[-1].to_seq,
        previous=tuple(message_text(item.message) for item in summaries),
        entries=tuple(Entry(item.from_seq, item.message) for item in taken),
        snapshot=tuple(item_key(item) for item in rest),
        partial=more or len(taken) < len(units),
        budget=budget,
    )


def summary_message(plan: FoldPlan, text: str, provider: str, model: str) -> Message:
    """The window message a summary becomes: a system message, pinned like one."""
    heading = f"{_HEADING} (messages {plan.cover_from}-{plan.up_to_seq}):"
    return Message(
        "system",
        [{"type": "text", "text": f"{heading}\n{text.strip()}"}],
        {
            SUMMARY_METADATA_KEY: {
                "from_seq": plan.cover_from,
                "to_seq": plan.up_to_seq,
                "provider": provider,
                "model": model,
            }
        },
    )


def _trimmed(old: Sequence[Key], snap: Sequence[Key]) -> bool:
    """``old`` is ``snap`` less some of its items, but not its newest: what
    trimming leaves (the oldest items cut, or those after a pinned request)."""
    if not old or not snap or old[-1] != snap[-1]:
        return False
    remaining = iter(snap)
    return all(key in remaining for key in old)


def swap_items(
    plan: FoldPlan, items: Sequence[WindowItem], summary: Message
) -> list[WindowItem] | None:
    """The window with ``summary`` in place of what ``plan`` folded; None when stale.

    Since the snapshot, appends may have added messages and trimming may have
    cut the oldest ones: both are fine. The plan is stale when anything else
    happened before the snapshot's newest message: another summary or a manual
    compaction put something new there, or a rewind took messages off its end.
    Precisely: the window's items that existed at the snapshot (besides the
    pinned system messages) must be the snapshot's less some of them, its
    newest kept (trimming cuts the oldest, or those after a pinned request).
    """
    pinned = _pinned(items, before=plan.cover_from)
    rest = items[pinned:]
    old = tuple(item_key(i) for i in rest if i.kind == "summary" or i.from_seq <= plan.last_seq)
    if not _trimmed(old, plan.snapshot):
        return None
    replaced = [item for item in rest if item.from_seq <= plan.up_to_seq]
    if any(item.to_seq > plan.up_to_seq for item in replaced):
        return None
    kept = [item for item in rest if item.from_seq > plan.up_to_seq]
    folded = WindowItem(summary, "summary", plan.cover_from, plan.up_to_seq, False)
    return [*items[:pinned], folded, *kept]
