"""Decoded log rows of the contexts read most recently, kept for the next read.

The message log is append-only and never rewritten: once committed, the row
at ``(context, seq)`` never changes, and seqs run without gaps from 1 to the
context's ``last_seq``. So a row decoded for one read serves the next: a
context's window (or a proxied turn's tail) is read again and again, each
time with a row or two more, and decoding the rows (their JSON, their time)
is most of such a read. :class:`RowCache` keeps, for each context, one run of
consecutive rows; a read of ``from_seq..last_seq`` (``last_seq`` from the
same snapshot) takes what the run holds and fetches only the rows after it
(:meth:`RowCache.plan`, then :meth:`RowCache.complete` with those rows).

The rows are shared between reads: :class:`~fastpaca_core.model.StoredMessage`
and its parts are treated as immutable throughout (code that changes a
message builds a new one). A run is dropped when the snapshot contradicts it
(a ``last_seq`` below the run's end, or a context created at another time:
not this database's context). Bounded by the JSON size of the rows it holds
(``max_bytes``); the contexts read least recently go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from ..model import StoredMessage

__all__ = ["ROW_CACHE_BYTES", "Plan", "RowCache", "SizedRows"]

ROW_CACHE_BYTES = 8 * 1024 * 1024  # JSON bytes of the rows held, all contexts together

# rows with the byte size of their JSON (parts and metadata), in seq order
SizedRows = list[tuple[StoredMessage, int]]


@dataclass(frozen=True, slots=True)
class Plan:
    """A read as :meth:`RowCache.plan` sees it: the rows it holds (``head``)
    and the first seq to fetch."""

    context_id: str
    created_at: datetime
    from_seq: int
    last_seq: int
    head: list[StoredMessage]
    head_sizes: list[int]
    fetch_from: int

    @property
    def fetches(self) -> bool:
        return self.fetch_from <= self.last_seq


@dataclass(slots=True)
class _Run:
    created_at: datetime  # the context's: another value means another context
    first: int  # seq of rows[0]
    rows: list[StoredMessage]
    sizes: list[int]
    size: int

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1


class RowCache:
    def __init__(self, max_bytes: int = ROW_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()  # reads run on the loop, now and then in a thread

    def plan(self, context_id: str, created_at: datetime, from_seq: int, last_seq: int) -> Plan:
        """What a read of rows ``from_seq..last_seq`` finds here, and what it
        has to fetch (``Plan.fetch_from..last_seq``; nothing when past it).
        ``last_seq`` and ``created_at`` are the context's in the snapshot being
        read; the fetched rows go to :meth:`complete`."""
        with self._lock:
            run = self._runs.get(context_id)
            if run is not None and (run.created_at != created_at or run.last > last_seq):
                self._drop(context_id)  # not the rows of this context's log
                run = None
            if run is None or not run.first <= from_seq <= run.last + 1 or from_seq > last_seq:
                return Plan(context_id, created_at, from_seq, last_seq, [], [], from_seq)
            self._runs.move_to_end(context_id)
            start = from_seq - run.first
            return Plan(
                context_id,
                created_at,
                from_seq,
                last_seq,
                run.rows[start:],
                run.sizes[start:],
                run.last + 1,
            )

    def complete(self, plan: Plan, fetched: SizedRows) -> list[StoredMessage]:
        """The rows of ``plan``, with ``fetched`` (its rows ``fetch_from..``) kept."""
        if plan.from_seq > plan.last_seq:
            return []
        rows = plan.head + [row for row, _ in fetched]
        if fetched and _consecutive(fetched, plan.fetch_from, plan.last_seq):
            sizes = plan.head_sizes + [n for _, n in fetched]
            self._keep(plan.context_id, plan.created_at, plan.from_seq, rows, sizes)
        return rows

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()
            self._size = 0

    @property
    def size(self) -> int:
        """JSON bytes of the rows held."""
        return self._size

    def _keep(
        self,
        context_id: str,
        created_at: datetime,
        first: int,
        rows: list[StoredMessage],
        sizes: list[int],
    ) -> None:
        size = sum(sizes)
        if size > self.max_bytes // 4:
            return  # one context may not take the cache for itself
        with self._lock:
            self._drop(context_id)
            self._runs[context_id] = _Run(created_at, first, list(rows), sizes, size)
            self._size += size
            while self._size > self.max_bytes:
                oldest = next(iter(self._runs))
                self._drop(oldest)

    def _drop(self, context_id: str) -> None:
        run = self._runs.pop(context_id, None)
        if run is not None:
            self._size -= run.size


def _consecutive(fetched: SizedRows, from_seq: int, last_seq: int) -> bool:
    """``fetched`` holds exactly the rows ``from_seq..last_seq``."""
    if len(fetched) != max(0, last_seq - from_seq + 1):
        return False
    return not fetched or (fetched[0][0].seq == from_seq and fetched[-1][0].seq == last_seq)
