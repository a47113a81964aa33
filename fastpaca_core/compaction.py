"""Window changes made inside an append or another operation: policies and rewinds.

Both run on the locked context row within the caller's operation, and return
the ``compaction`` event they stored (the caller publishes it after commit).
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ValidationError
from .events import Event
from .model import ContextRecord, StoredMessage
from .policies import get_policy
from .stores.base import Tx
from .toolcalls import parts_refs
from .window import WindowItem, apply_items, drop_orphan_results, items_of, valid_cuts

__all__ = ["calls_answered", "rewind", "run_policy"]


def _results_cut(kept: Sequence[WindowItem], dropped: Sequence[WindowItem]) -> set[str]:
    """The calls in ``kept`` whose results are in ``dropped`` (a result pairs
    with the latest call of its id before it, as in ``valid_cuts``)."""
    calls: set[str] = set()
    for item in kept:
        calls |= item.refs[0]
    cut: set[str] = set()
    for item in dropped:
        made, results = item.refs
        cut |= results & calls
        calls -= made  # later results of these ids answer the call made here
    return cut


def calls_answered(items: Sequence[WindowItem]) -> set[str]:
    """The calls made before ``items`` that ``items`` give a result."""
    made: set[str] = set()
    answered: set[str] = set()
    for item in items:
        calls, results = item.refs
        answered |= results - made
        made |= calls
    return answered


async def rewind(
    tx: Tx, ctx: ContextRecord, new_rows: Sequence[StoredMessage], rewind_to: int
) -> Event:
    """Drop log messages ``rewind_to..`` (before ``new_rows``) from the window.

    A call the window keeps must keep a result: the rewind may drop its
    result only when ``new_rows`` answer it again (a turn of tool results
    sent again, or edited, with a regenerated answer)."""
    old_last = new_rows[0].seq - 1
    rows = await tx.read_messages(ctx.live_from_seq, old_last)
    items = items_of(ctx, [*rows, *new_rows])
    cut = sum(1 for item in items if item.from_seq < rewind_to)
    old_end = len(items) - len(new_rows)
    if not valid_cuts(items[:old_end])[cut] and not _results_cut(
        items[:cut], items[cut:old_end]
    ) <= calls_answered(items[old_end:]):
        raise ValidationError(
            "rewind_to_seq", f"would separate a tool call from its result at seq {rewind_to}"
        )
    kept = items[:cut] + items[old_end:]
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


async def _read_items(tx: Tx, from_seq: int, to_seq: int) -> list[WindowItem]:
    """Log rows as window items: undecoded where the store offers that."""
    read_items = getattr(tx, "read_items", None)
    if read_items is not None:
        items: list[WindowItem] = await read_items(from_seq, to_seq)
        return items
    return [WindowItem.of_row(row) for row in await tx.read_messages(from_seq, to_seq)]


_NEAR_ROWS = 16  # rows before an append read for the calls its results answer


async def run_policy(tx: Tx, ctx: ContextRecord, new_rows: Sequence[StoredMessage]) -> Event | None:
    policy = get_policy(ctx.policy.strategy)
    due = policy.should_run(ctx, ctx.policy.config)
    # A result whose call the window does not hold (one an earlier compaction cut
    # away, a call bigger than the budget, say; or one never made) would sit in
    # the window as an orphan: repair that too.
    answered: set[str] = set()
    if policy.compacts:
        for row in new_rows:  # most appends hold no result: nothing more to see
            answered |= parts_refs(row.parts)[1]
        if answered:  # the calls made before these rows that they answer
            answered = calls_answered([WindowItem.of_row(row) for row in new_rows])
    first_new = new_rows[0].seq if new_rows else ctx.last_seq + 1
    if not due and answered:
        # the call is usually in the prefix or the newest row before the new ones
        for entry in ctx.prefix:
            answered -= parts_refs(entry.message.parts)[0]
        # (then a few rows more: results of parallel calls sent one per message)
        end = first_new - 1
        for span in (1, _NEAR_ROWS):
            start = max(ctx.live_from_seq, first_new - span)
            if not answered or start > end:
                break
            for item in await _read_items(tx, start, end):
                answered -= item.refs[0]
            end = start - 1
    if not due and not answered:
        return None
    items = items_of(ctx, [])
    if ctx.live_from_seq < first_new:
        items.extend(await _read_items(tx, ctx.live_from_seq, first_new - 1))
    items.extend(WindowItem.of_row(row) for row in new_rows if row.seq >= ctx.live_from_seq)
    if not due:
        # only the orphan results go: the window is within what the policy allows
        result = drop_orphan_results(items)[0]
    else:
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
