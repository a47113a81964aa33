"""Reading a context's change events back from the store, by version.

Every version of a context is exactly one change: a log row (a ``message``
event, rebuilt from the row) or a stored event (``compaction``,
``tombstoned``). :func:`replay` yields them in version order for a range of
versions that are all committed, so the result has no holes unless the store
lacks something (which the stream reports as a ``gap``).

It reads the store a page at a time and holds one page while its consumer
takes the events (a stalled websocket holds it until it is dropped), so a page
is bounded in bytes as well as rows: each read of the log stops at
:data:`PAGE` rows or at the row that brings their stored JSON to
:data:`PAGE_BYTES` (``Store.read_messages(max_bytes=)``), at least one row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..events import Event, MessageData
from ..model import StoredMessage
from ..stores.base import Store, read_capped

__all__ = ["PAGE", "PAGE_BYTES", "first_seq_after", "message_event", "replay"]

PAGE = 500  # log rows, and stored events, a page holds at most
PAGE_BYTES = 1024 * 1024  # about the bytes of log rows a page holds (at least one row)


def message_event(context_id: str, row: StoredMessage) -> Event:
    """The ``message`` event of a log row, as the engine publishes it."""
    return Event(context_id, "message", row.version, MessageData(row))


async def first_seq_after(store: Store, context_id: str, last_seq: int, after_version: int) -> int:
    """The smallest seq whose append produced a version above ``after_version``.

    Versions grow with seqs and a seq never exceeds its version, so a binary
    search over point reads finds it in O(log n) whatever the history length.
    """
    lo, hi = 1, min(last_seq, after_version) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        rows = await store.read_messages(context_id, mid, mid)
        if rows and rows[0].version > after_version:
            hi = mid
        else:
            lo = mid + 1
    return lo


async def replay(
    store: Store, context_id: str, next_seq: int, after_version: int, upto_version: int
) -> AsyncIterator[Event]:
    """Events with ``after_version < version <= upto_version``, oldest first.

    ``next_seq`` is the first seq whose version is above ``after_version``.
    """
    after = after_version
    while after < upto_version:
        batch, bound, next_seq = await _page(store, context_id, next_seq, after, upto_version)
        for event in batch:
            yield event
        if bound == upto_version or not batch:
            return
        after = bound


async def _page(
    store: Store, context_id: str, next_seq: int, after: int, upto: int
) -> tuple[list[Event], int, int]:
    """The events of one page, the version it ends at and the next page's first seq."""
    rows = await read_capped(store, context_id, next_seq, next_seq + PAGE - 1, PAGE_BYTES)
    stored = await store.read_events(context_id, after, PAGE)
    bound = upto
    if rows:  # the read may have stopped at its bound (rows or bytes) before the log's end
        bound = min(bound, rows[-1].version)
    if len(stored) == PAGE:
        bound = min(bound, stored[-1].version)
    batch = [message_event(context_id, row) for row in rows if row.version <= bound]
    if batch:
        next_seq = rows[len(batch) - 1].seq + 1
    batch.extend(e for e in stored if e.version <= bound)
    batch.sort(key=lambda e: e.version)
    return batch, bound, next_seq
