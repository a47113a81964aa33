"""The PostgreSQL store's group write: concurrent writes sent as one statement.

An optimistic operation that started from a known context row (see
:meth:`.postgres.PostgresStore.run`) ends with one write that commits by itself
if the row's ``xmin`` is still the one known. Such writes on different
contexts go through a :class:`GroupWriter`: one that finds a lane free and
nobody waiting is sent at once by its caller, in its own statement; those
that arrive while ``LANES`` writes or groups are under way wait, and the next
statement carries all of them (up to ``MAX_GROUP``), so under load many
appends share one round trip, one statement and one commit. Each write in a
group is still conditional on its own row: one that lost a race is left out
(its caller reads the row and tries again) and the others apply. A statement
that fails with a database error is sent again one write at a time, so a write
that cannot be applied fails alone; one whose connection is lost mid-statement
leaves every write in it unknown (retry with the same idempotency key).

One process never has two writes on a context under way together (the store
runs one operation at a time on a context), and a group takes one write
per context, so a group never updates a row twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreError, StoreUnavailable
from ..events import Event
from ..jsonutil import dumps_str
from ..model import StoredMessage
from ._codec import CONTEXT_COLUMNS, MESSAGE_COLUMNS, message_values
from .base import IdempotencyRecord

__all__ = ["GROUP_SQL", "LANES", "MAX_GROUP", "GroupWriter", "Write", "group_args"]

log = logging.getLogger("fastpaca.store")

LANES = 2  # group statements under way at once, per process
MAX_GROUP = 128  # writes in one statement
_UNKNOWN = (
    "the write's statement was interrupted, so it may or may not have been applied; "
    "retry it with the same Idempotency-Key"
)

_COLUMNS = [c.strip() for c in CONTEXT_COLUMNS.split(",")]
_TYPES = {
    "id": "text",
    "token_budget": "bigint",
    "trigger_ratio": "float8",
    "policy": "text",
    "metadata": "text",
    "status": "text",
    "version": "bigint",
    "last_seq": "bigint",
    "total_tokens": "bigint",
    "prefix": "text",
    "live_from_seq": "bigint",
    "live_base_tokens": "bigint",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    "calibration": "float8",
    "calibration_samples": "bigint",
}
_MESSAGE_TYPES = ["bigint", "text", "text", "text", "bigint", "bigint", "bigint", "timestamptz"]


def _unnest(first: int, types: list[str]) -> str:
    return "unnest({})".format(", ".join(f"${first + i}::{t}[]" for i, t in enumerate(types)))


def _group_sql() -> str:
    """The group statement: the rows to write (``u``, each with the ``xmin`` its
    write expects), the context rows updated where ``xmin`` matches (``c``), and
    the messages, events and idempotency keys of those contexts only."""
    n = len(_COLUMNS) + 1  # the columns and x
    u = _unnest(1, [_TYPES[c] for c in _COLUMNS] + ["bigint"])
    sets = ", ".join(f"{c} = u.{c}" for c in _COLUMNS[1:])
    m = _unnest(n + 1, ["text", *_MESSAGE_TYPES])
    e = _unnest(n + 10, ["text", "bigint", "text", "text"])
    k = _unnest(n + 14, ["text", "text", "text", "text", "timestamptz"])
    return (
        f"WITH u AS (SELECT * FROM {u} AS u({', '.join(_COLUMNS)}, x)), "
        f"c AS (UPDATE contexts t SET {sets} FROM u "
        "WHERE t.id = u.id AND t.xmin = u.x::text::xid RETURNING t.id, t.xmin AS x), "
        f"m AS (INSERT INTO messages (context_id, {MESSAGE_COLUMNS}) "
        f"SELECT v.* FROM {m} AS v(context_id, {MESSAGE_COLUMNS}) "
        "WHERE v.context_id IN (SELECT id FROM c)), "
        "e AS (INSERT INTO events (context_id, version, type, data) "
        f"SELECT v.* FROM {e} AS v(context_id, version, type, data) "
        "WHERE v.context_id IN (SELECT id FROM c)), "
        "k AS (INSERT INTO idempotency_keys (context_id, key, request_hash, response, "
        f"created_at) SELECT v.* FROM {k} AS v(context_id, key, request_hash, response, "
        "created_at) WHERE v.context_id IN (SELECT id FROM c)) "
        "SELECT id, x::text::bigint FROM c"
    )


GROUP_SQL = _group_sql()


@dataclass(slots=True, eq=False)
class Write:
    """One operation's writes: its context row (column values in
    ``CONTEXT_COLUMNS`` order), the ``xmin`` it expects that row to have, and
    what it adds. ``future``: the row's ``xmin`` after the write, or None when
    the row had changed and nothing was written."""

    values: tuple[Any, ...]
    xmin: int
    messages: list[StoredMessage]
    events: list[Event]
    idem: IdempotencyRecord | None
    future: asyncio.Future[int | None] = field(repr=False)

    @property
    def context_id(self) -> str:
        return str(self.values[0])


def group_args(writes: list[Write]) -> list[Any]:
    """The parameters of :data:`GROUP_SQL` for ``writes``: one array per column."""
    columns: list[list[Any]] = [list(c) for c in zip(*(w.values for w in writes), strict=True)]
    args: list[Any] = [*columns, [w.xmin for w in writes]]
    m: list[list[Any]] = [[] for _ in range(9)]
    e: list[list[Any]] = [[] for _ in range(4)]
    k: list[list[Any]] = [[] for _ in range(5)]
    for w in writes:
        cid = w.context_id
        for r in w.messages:
            for column, value in zip(m, message_values(cid, r, r.inserted_at), strict=True):
                column.append(value)
        for ev in w.events:
            for column, value in zip(
                e, (cid, ev.version, ev.type, dumps_str(ev.data)), strict=True
            ):
                column.append(value)
        if w.idem is not None:
            i = w.idem
            for column, value in zip(
                k,
                (cid, i.key, i.request_hash, dumps_str(i.response), i.created_at),
                strict=True,
            ):
                column.append(value)
    return [*args, *m, *e, *k]


Send = Callable[[list[Write]], Awaitable[dict[str, int]]]


class GroupWriter:
    """Sends :class:`Write` s, several to a statement when they queue up.

    ``send(writes)`` runs one group statement and returns the applied contexts'
    new ``xmin`` by id; it raises :class:`StoreUnavailable` when the database
    cannot be reached (or the outcome is unknown) and :class:`StoreError` when
    the statement failed.
    """

    def __init__(self, send: Send, *, lanes: int = LANES, max_group: int = MAX_GROUP) -> None:
        self._send = send
        self._lanes = lanes
        self._max = max_group
        self._queue: deque[Write] = deque()
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def claim(self) -> bool:
        """Take a lane for a write its caller sends itself, in the statement
        made for it alone (cheaper for the database than a group of one): True
        when a lane is free and no write waits. Give it back with :meth:`done`."""
        if self._busy < self._lanes and not self._queue:
            self._busy += 1
            return True
        return False

    def done(self) -> None:
        self._busy -= 1
        if self._queue and self._busy < self._lanes:
            self._start()

    async def write(self, write: Write) -> int | None:
        self._queue.append(write)
        if self._busy < self._lanes:
            self._start()
        return await write.future

    def _start(self) -> None:
        self._busy += 1
        task = asyncio.get_running_loop().create_task(self._lane(), name="fastpaca-pg-group")
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A lane stopped: it found the queue empty, or it was cancelled (the
        loop is closing) or failed (a bug); then nothing will send what is
        still queued, so those writes fail, unsent."""
        self._tasks.discard(task)
        self._busy -= 1
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("the group writer failed", exc_info=error)
        if self._queue and (task.cancelled() or error is not None):
            queued = list(self._queue)
            self._queue.clear()
            _fail(queued, StoreUnavailable("the write was not sent: the store is closing"))
        elif self._queue and self._busy < self._lanes:
            self._start()

    def _take(self) -> list[Write]:
        """The next group: queued writes whose callers still wait, one per
        context, in id order (so two processes' groups lock the rows they
        share in the same order, and cannot deadlock on them)."""
        queue = self._queue
        group: list[Write] = []
        ids: set[str] = set()
        later: list[Write] = []
        while queue and len(group) < self._max:
            w = queue.popleft()
            if w.future.done():  # the caller gave up before its turn
                continue
            if w.context_id in ids:
                later.append(w)
                continue
            ids.add(w.context_id)
            group.append(w)
        queue.extendleft(reversed(later))
        group.sort(key=lambda w: w.context_id)
        return group

    async def _lane(self) -> None:
        while group := self._take():
            await self._deliver(group)

    async def _deliver(self, group: list[Write]) -> None:
        try:
            try:
                applied = await self._send(group)
            except StoreUnavailable as exc:
                _fail(group, exc)
                return
            except StoreError as exc:
                if len(group) == 1:
                    _fail(group, exc)
                    return
                for w in group:  # find the one that cannot be applied: each alone
                    if not w.future.done():
                        await self._deliver([w])
                return
        except BaseException:  # cancelled (the loop is closing), or a bug
            _fail(group, StoreUnavailable(_UNKNOWN))
            raise
        for w in group:
            if not w.future.done():
                w.future.set_result(applied.get(w.context_id))

    async def drain(self) -> None:
        """Wait for the statements under way (closing the store); being
        cancelled here does not cancel them."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))


def _fail(group: list[Write], exc: BaseException) -> None:
    for w in group:
        if not w.future.done():
            w.future.set_exception(exc)
