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
from .window import WindowItem, apply_items, items_of, valid_cuts

__all__ = ["rewind", "run_policy"]


async def rewind(
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


async def _read_items(tx: Tx, from_seq: int, to_seq: int) -> list[WindowItem]:
    """Log rows as window items: undecoded where the store offers that."""
    read_items = getattr(tx, "read_items", None)
    if read_items is not None:
        items: list[WindowItem] = await read_items(from_seq, to_seq)
        return items
    return [WindowItem.of_row(row) for row in await tx.read_messages(from_seq, to_seq)]


async def run_policy(tx: Tx, ctx: ContextRecord, new_rows: Sequence[StoredMessage]) -> Event | None:
    policy = get_policy(ctx.policy.strategy)
    due = policy.should_run(ctx, ctx.policy.config)
    # A result whose call an earlier compaction cut away (a call bigger than the
    # budget, say) would sit in the window as an orphan: repair that too.
    answered: set[str] = set()
    if policy.compacts and (ctx.prefix or ctx.live_from_seq > 1):
        for row in new_rows:
            answered |= parts_refs(row.parts)[1]
    if not due and not answered:
        return None
    first_new = new_rows[0].seq if new_rows else ctx.last_seq + 1
    items = items_of(ctx, [])
    if ctx.live_from_seq < first_new:
        items.extend(await _read_items(tx, ctx.live_from_seq, first_new - 1))
    items.extend(WindowItem.of_row(row) for row in new_rows if row.seq >= ctx.live_from_seq)
    if not due:
        calls: set[str] = set()
        for item in items:
            calls |= item.refs[0]
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
