"""Decoded log rows of the contexts read most recently, kept for the next read.

The message log is append-only and never rewritten: once committed, the row
at ``(context, seq)`` never changes, and seqs run without gaps from 1 to the
context's ``last_seq``. So a row decoded for one read serves the next: a
context's window (or a proxied turn's tail) is read again and again, each
time with a row or two more, and decoding the rows (their JSON, their time)
is most of such a read. :class:`RowCache` keeps, for each context, one run of
consecutive rows; a read of ``from_seq..last_seq`` (``last_seq`` from the
same snapshot) takes what the run holds and fetches the rows after it
(:meth:`RowCache.plan`, then :meth:`RowCache.complete` with those rows).

What the database did behind this process's back is caught where it can be:
a read fetches the run's last row again and compares it, so a log that lost
its newest rows and was written on (a restore, a failover that lost commits)
is not served from the run; nor is one whose context was created at another
time, or that ends before the run. The rows are shared between reads:
:class:`~fastpaca_core.model.StoredMessage` and its parts are treated as
immutable throughout (code that changes a message builds a new one).
Bounded by ``max_bytes`` (see ``row_size``); the contexts read least
recently go first.

A store that can tell nothing changed behind its back since a run was read
(SQLite's writer: ``PRAGMA data_version``) gives each read an ``epoch``, a
number it moves on whenever it finds the database changed by another
connection; a run read in the current epoch holds the log's rows as they are
now. The store's writer then adds the rows it committed to such a run
(:meth:`RowCache.extend`), and a read that knows the context's ``last_seq``
takes the rows from it without fetching anything (:meth:`RowCache.serve`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from ..model import StoredMessage

__all__ = [
    "JSON_FACTOR",
    "ROW_CACHE_BYTES",
    "ROW_OVERHEAD",
    "Plan",
    "RowCache",
    "SizedRows",
    "row_size",
]

ROW_CACHE_BYTES = 8 * 1024 * 1024  # all contexts together
ROW_OVERHEAD = 512  # bytes counted for a decoded row besides its JSON ...
JSON_FACTOR = 3  # ... and per character of its JSON (text in CJK or emoji: 1.7-3x)

# rows with their size for the cache (``row_size``), in seq order
SizedRows = list[tuple[StoredMessage, int]]


def row_size(parts_json: str, metadata_json: str) -> int:
    """What a decoded row counts against the cache: ``JSON_FACTOR`` times its
    JSON, and ``ROW_OVERHEAD``. About what a row of plain text takes decoded,
    or more; rows of deeply structured parts (tool calls with nested input)
    can take a few times what they count."""
    return JSON_FACTOR * (len(parts_json) + len(metadata_json)) + ROW_OVERHEAD


@dataclass(slots=True)
class _Run:
    created_at: datetime  # the context's: another value means another context
    first: int  # seq of rows[0]
    rows: list[StoredMessage]
    sizes: list[int]
    size: int
    epoch: int | None = None  # the store's epoch its rows were read in (None: unknown)

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1


@dataclass(frozen=True, slots=True)
class Plan:
    """A read as :meth:`RowCache.plan` sees it: fetch ``fetch_from..last_seq``
    (nothing when past it) and hand the rows to :meth:`RowCache.complete`."""

    context_id: str
    created_at: datetime
    from_seq: int
    last_seq: int
    fetch_from: int
    run: _Run | None = None  # the run the read starts in; its last row is fetched again
    epoch: int | None = None  # the store's epoch when the read began, if it keeps one

    @property
    def fetches(self) -> bool:
        return self.fetch_from <= self.last_seq


class RowCache:
    def __init__(self, max_bytes: int = ROW_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()  # reads run on the loop, now and then in a thread

    @property
    def size(self) -> int:
        """What the rows held count (see ``row_size``)."""
        return self._size

    def plan(
        self,
        context_id: str,
        created_at: datetime,
        from_seq: int,
        last_seq: int,
        epoch: int | None = None,
    ) -> Plan:
        """How to read rows ``from_seq..last_seq``, ``last_seq`` and
        ``created_at`` being the context's in the snapshot being read, which
        began in ``epoch`` (or later)."""
        with self._lock:
            run = self._runs.get(context_id)
            if run is not None and (run.created_at != created_at or run.last > last_seq):
                self._drop(context_id)  # not the rows of this context's log
                run = None
            if run is None or not run.first <= from_seq <= run.last or from_seq > last_seq:
                return self.afresh(context_id, created_at, from_seq, last_seq, epoch)
            self._runs.move_to_end(context_id)
            return Plan(context_id, created_at, from_seq, last_seq, run.last, run, epoch)

    @staticmethod
    def afresh(
        context_id: str,
        created_at: datetime,
        from_seq: int,
        last_seq: int,
        epoch: int | None = None,
    ) -> Plan:
        """A plan that fetches every row (see :meth:`complete`)."""
        return Plan(context_id, created_at, from_seq, last_seq, from_seq, None, epoch)

    def serve(
        self, context_id: str, created_at: datetime, from_seq: int, last_seq: int, epoch: int
    ) -> list[StoredMessage] | None:
        """Rows ``from_seq..last_seq`` from the run alone, or None: only when
        the run was read (or extended) in ``epoch``, the store's current one,
        in which the caller knows the context's ``last_seq`` and ``created_at``
        as committed, and the run ends there."""
        with self._lock:
            run = self._runs.get(context_id)
            if (
                run is None
                or run.epoch != epoch
                or run.last != last_seq
                or run.created_at != created_at
                or from_seq < run.first
            ):
                return None
            self._runs.move_to_end(context_id)
            return run.rows[from_seq - run.first :]

    def follows(self, context_id: str, seq: int, epoch: int) -> bool:
        """Whether :meth:`extend` may take rows from ``seq`` on (to decode
        them only then)."""
        run = self._runs.get(context_id)
        return run is not None and run.epoch == epoch and run.last + 1 == seq

    def extend(self, context_id: str, created_at: datetime, rows: SizedRows, epoch: int) -> None:
        """Add ``rows``, just committed, to the context's run, when it was
        read in ``epoch`` (the epoch of the transaction that wrote them, so
        nothing else wrote between) and they follow on from its last row."""
        if not rows:
            return
        with self._lock:
            run = self._runs.get(context_id)
            if run is None or run.epoch != epoch or run.created_at != created_at:
                return
            if not _consecutive(rows, run.last + 1, run.last + len(rows)):
                return
            # copies (a reader in a thread may hold the run): a list copy is a
            # memcpy; the sizes are added up from the run's, not again
            first, kept, sizes, size = run.first, run.rows[:], run.sizes[:], run.size
        kept.extend(r for r, _ in rows)
        sizes.extend(n for _, n in rows)
        size += sum(n for _, n in rows)
        self._keep(context_id, created_at, first, kept, sizes, epoch, run, size)

    def complete(self, plan: Plan, fetched: SizedRows) -> list[StoredMessage] | None:
        """The rows of ``plan``, with ``fetched`` (its rows ``fetch_from..``)
        kept for the next read; None when the run's last row, fetched again,
        is not the one it holds: then read ``afresh``."""
        if plan.from_seq > plan.last_seq:
            return []
        if not _consecutive(fetched, plan.fetch_from, plan.last_seq):
            if plan.run is not None:
                self._forget(plan)
                return None
            return [row for row, _ in fetched]  # not the log we know: not kept
        run, epoch = plan.run, plan.epoch
        if run is None:
            rows, sizes, first = [r for r, _ in fetched], [n for _, n in fetched], plan.from_seq
        else:
            if fetched[0][0] != run.rows[-1]:
                self._forget(plan)
                return None
            start = plan.from_seq - run.first
            new = fetched[1:]
            rows = run.rows[start:] + [r for r, _ in new]
            if not new:
                if epoch is not None and (run.epoch is None or run.epoch < epoch):
                    run.epoch = epoch  # its last row checked: the run is as the log is now
                return rows
            # keep rows before this read's start too (another reader may start
            # earlier), as many as this read returns at most
            keep = max(0, start - len(rows))
            first = run.first + keep
            rows_kept = run.rows[keep:] + [r for r, _ in new]
            sizes = run.sizes[keep:] + [n for _, n in new]
            self._keep(plan.context_id, plan.created_at, first, rows_kept, sizes, epoch)
            return rows
        self._keep(plan.context_id, plan.created_at, first, rows, sizes, epoch)
        return list(rows)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()
            self._size = 0

    def _keep(
        self,
        context_id: str,
        created_at: datetime,
        first: int,
        rows: list[StoredMessage],
        sizes: list[int],
        epoch: int | None,
        replaces: _Run | None = None,
        size: int | None = None,
    ) -> None:
        """Hold ``rows`` as the context's run (only if the run held is still
        ``replaces``, when given); ``size``: their sizes' sum, when known."""
        if size is None:
            size = sum(sizes)
        cap, drop = self.max_bytes // 4, 0  # one context may not take it all
        while size > cap and drop < len(rows):  # the oldest rows go first
            size -= sizes[drop]
            drop += 1
        if drop:
            first, rows, sizes = first + drop, rows[drop:], sizes[drop:]
        with self._lock:
            if replaces is not None and self._runs.get(context_id) is not replaces:
                return  # a read (in a thread) kept another meanwhile
            self._drop(context_id)
            if not rows:
                return
            self._runs[context_id] = _Run(created_at, first, rows, sizes, size, epoch)
            self._size += size
            while self._size > self.max_bytes:
                self._drop(next(iter(self._runs)))

    def _forget(self, plan: Plan) -> None:
        with self._lock:
            if self._runs.get(plan.context_id) is plan.run:
                self._drop(plan.context_id)

    def _drop(self, context_id: str) -> None:
        run = self._runs.pop(context_id, None)
        if run is not None:
            self._size -= run.size


def _consecutive(fetched: SizedRows, from_seq: int, last_seq: int) -> bool:
    """``fetched`` holds exactly the rows ``from_seq..last_seq``."""
    if len(fetched) != max(0, last_seq - from_seq + 1):
        return False
    return not fetched or (fetched[0][0].seq == from_seq and fetched[-1][0].seq == last_seq)
