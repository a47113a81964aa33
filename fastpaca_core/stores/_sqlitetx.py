"""The SQLite store's operations on the write transaction, and its row reads.

:class:`SQLiteTx` is the :class:`~.base.Tx` that :class:`~.sqlite.SQLiteStore`'s
writer hands each operation of a batch; :class:`Known` is what the writer
knows of what it committed; ``read_messages`` reads log rows on any connection.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from typing import Any

from ..events import Event
from ..jsonutil import dumps_str, loads
from ..model import ContextRecord, PolicySpec, StoredMessage, SummaryRecord, format_time
from ..window import WindowItem
from ._codec import (
    CONTEXT_COLUMNS,
    MESSAGE_COLUMNS,
    SUMMARY_COLUMNS,
    RawMessage,
    context_from_row,
    context_values,
    message_from_row,
    message_values,
    parse_time,
    summary_values,
)
from ._rowcache import RowCache, SizedRows, row_size
from .base import IdempotencyRecord

__all__ = ["Known", "SQLiteTx", "is_busy", "read_messages", "read_messages_sized"]


_COLUMNS = [c.strip() for c in CONTEXT_COLUMNS.split(",")]
_CREATED_AT = _COLUMNS.index("created_at")
_UPDATED_AT = _COLUMNS.index("updated_at")
_INSERT_CONTEXT = (
    f"INSERT INTO contexts ({CONTEXT_COLUMNS}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_UPDATE_CONTEXT = f"UPDATE contexts SET {', '.join(f'{c} = ?' for c in _COLUMNS[1:])} WHERE id = ?"
_INSERT_MESSAGES = (
    f"INSERT INTO messages (context_id, {MESSAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
)


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """The statement would have had to wait for another connection's lock."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _times(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(format_time(v) if isinstance(v, datetime) else v for v in values)


class SQLiteTx:
    """One operation's view of the write transaction.

    ``known`` holds context rows (as stored: the column values) as committed,
    ``staged`` the rows operations earlier in this batch saved: a context found
    in either is decoded from there instead of read again. The row this
    operation saves or reads lands in ``row``, which the batch keeps only if
    the operation succeeds (and the known rows take only once it committed).
    Rows, not records: every load gets a record of its own (a known row's is
    decoded once, and copied: :meth:`Known.record`), so nothing a caller holds
    is shared with a later operation. The log rows it inserts land in
    ``logged`` (their values), kept as ``row`` is.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        context_id: str,
        known: Known,
        staged: dict[str, tuple[Any, ...]],
    ) -> None:
        self._conn = conn
        self.context_id = context_id
        self.wrote = False  # set before the operation's first write statement
        self._known = known
        self._staged = staged
        self.row: tuple[Any, ...] | None = None
        self.logged: list[tuple[Any, ...]] = []  # the log rows inserted (their values)
        # times as stored, by the datetime object they were read or written as: an
        # append's rows and its context row share one clock reading, and the
        # context's created_at is the one it was loaded with (see _text)
        self._times: dict[int, tuple[datetime, str]] = {}

    async def load_context(self) -> ContextRecord | None:
        cid = self.context_id
        row = self.row or self._staged.get(cid)
        if row is None:
            row = self._known.rows.get(cid)
            if row is not None:  # decoded by a read since its commit, or afresh
                return self._loaded(row, self._known.record(cid, row, keep=False))
        if row is None:
            row = self._conn.execute(
                f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?", (cid,)
            ).fetchone()
            if row is None:
                return None
            self.row = row  # as committed: no operation of this batch saved it
        return self._loaded(row, context_from_row(row))

    def _loaded(self, row: tuple[Any, ...], ctx: ContextRecord) -> ContextRecord:
        created = ctx.created_at
        self._times[id(created)] = (created, row[_CREATED_AT])
        return ctx

    def _text(self, value: datetime) -> str:
        """``format_time(value)``, once per datetime object in this operation."""
        known = self._times.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        text = format_time(value)
        self._times[id(value)] = (value, text)  # (holds the object: its id stays its own)
        return text

    async def save_context(self, ctx: ContextRecord, *, created: bool) -> None:
        self.wrote = True
        self.row = None  # until the statement succeeded
        values = list(context_values(ctx))  # once per append: no generic per-value pass
        values[_CREATED_AT] = self._text(ctx.created_at)
        values[_UPDATED_AT] = self._text(ctx.updated_at)
        row = tuple(values)  # the columns in SELECT order, as a read would return them
        if created:
            self._conn.execute(_INSERT_CONTEXT, values)
        else:
            values.append(values[0])
            self._conn.execute(_UPDATE_CONTEXT, values[1:])
        self.row = row

    async def insert_messages(self, rows: list[StoredMessage]) -> None:
        self.wrote = True
        cid, text = self.context_id, self._text
        values = [message_values(cid, r, text(r.inserted_at)) for r in rows]
        self._conn.executemany(_INSERT_MESSAGES, values)
        self.logged.extend(values)

    async def read_messages(self, from_seq: int, to_seq: int) -> list[StoredMessage]:
        return read_messages(self._conn, self.context_id, from_seq, to_seq)

    async def read_items(self, from_seq: int, to_seq: int) -> list[WindowItem]:
        """The rows as window items, decoded only when something needs them (a
        compaction mostly needs each row's tokens and whether it holds a tool call)."""
        rows = self._conn.execute(_SELECT_MESSAGES, (self.context_id, from_seq, to_seq))
        of_raw = WindowItem.of_raw
        return [of_raw(RawMessage(values)) for values in rows.fetchall()]

    async def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        row = self._conn.execute(
            "SELECT request_hash, response, created_at FROM idempotency_keys "
            "WHERE context_id = ? AND key = ?",
            (self.context_id, key),
        ).fetchone()
        if row is None:
            return None
        return IdempotencyRecord(key, row[0], loads(row[1]), parse_time(row[2]))

    async def put_idempotency(self, record: IdempotencyRecord) -> None:
        self.wrote = True
        self._conn.execute(
            "INSERT INTO idempotency_keys (context_id, key, request_hash, response, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                self.context_id,
                record.key,
                record.request_hash,
                dumps_str(record.response),
                format_time(record.created_at),
            ),
        )

    async def insert_event(self, event: Event) -> None:
        self.wrote = True
        self._conn.execute(
            "INSERT INTO events (context_id, version, type, data) VALUES (?, ?, ?, ?)",
            (self.context_id, event.version, event.type, dumps_str(event.data)),
        )

    async def insert_summary(self, record: SummaryRecord) -> None:
        self.wrote = True
        self._conn.execute(
            f"INSERT INTO summaries (context_id, {SUMMARY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (self.context_id, *_times(summary_values(record))),
        )

    async def take_lease(self, holder: str, ttl: float) -> bool:
        self.wrote = True
        now = time.time()
        row = self._conn.execute(
            "INSERT INTO leases (context_id, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (context_id) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at "
            "WHERE leases.holder = excluded.holder OR leases.expires_at <= ? "
            "RETURNING holder",
            (self.context_id, holder, now + ttl, now),
        ).fetchone()
        return row is not None

    async def drop_lease(self, holder: str) -> None:
        self.wrote = True
        self._conn.execute(
            "DELETE FROM leases WHERE context_id = ? AND holder = ?", (self.context_id, holder)
        )


_LAST_SEQ = _COLUMNS.index("last_seq")
_METADATA = _COLUMNS.index("metadata")
_POLICY = _COLUMNS.index("policy")


class Known:
    """The context rows (as stored: the column values) as this process last
    committed them, valid while no other connection has written to the
    database since: ``PRAGMA data_version`` on the write connection changes
    exactly when another connection commits (not for its own commits).

    ``epoch`` moves on each time such a change is found (or the rows are
    forgotten); the row cache's runs read or extended in the current epoch
    hold the log as it is (see :mod:`._rowcache`). After each COMMIT the
    writer extends them with the rows it committed (:meth:`keep`), so a read
    on the idle write connection of a context known here takes the row and
    the log rows without reading them (:meth:`row`): the proxy's next turn,
    a client's read after its append.
    """

    def __init__(self, cache: RowCache) -> None:
        self.rows: dict[str, tuple[Any, ...]] = {}
        self._decoded: dict[str, tuple[tuple[Any, ...], ContextRecord]] = {}  # see record
        self.version: int | None = None  # data_version when last checked
        self.epoch = 0
        self._cache = cache

    def check(self, conn: sqlite3.Connection) -> bool:
        """Whether nothing changed since the last check; else forget the rows
        and start a new epoch (in the write transaction, or with the write
        connection idle)."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self.version:
            return True
        self.rows.clear()
        self._decoded.clear()
        self.version = version
        self.epoch += 1
        return False

    def forget(self) -> None:
        self.rows.clear()
        self._decoded.clear()
        self.version = None  # and the next check starts afresh
        self.epoch += 1

    def row(self, conn: sqlite3.Connection, context_id: str) -> tuple[Any, ...] | None:
        """The context's row as committed, if known and nothing changed since
        (``conn``: the write connection, idle)."""
        row = self.rows.get(context_id)
        if row is None or not self.check(conn):
            return None
        return row

    def record(self, context_id: str, row: tuple[Any, ...], keep: bool = True) -> ContextRecord:
        """``context_from_row(row)`` for the context's known ``row``: decoded
        once by a read (``keep``), which the next operation's load and reads
        until the next commit take a copy of (the proxy's turn: a read, then
        an append). Each caller may change its copy (an operation moves its
        counters on): its containers are its own, the policy and metadata
        decoded again; the prefix entries are shared, immutable as log rows
        are. A load that finds no read's record decodes afresh (appends
        alone: each row is loaded once, a copy would cost more)."""
        hit = self._decoded.get(context_id)
        if hit is not None and hit[0] is row:
            ctx = hit[1]
        elif keep and self.rows.get(context_id) is row:
            ctx = context_from_row(row)
            self._decoded[context_id] = (row, ctx)
        else:
            return context_from_row(row)
        policy, metadata = loads(row[_POLICY]), row[_METADATA]
        return ContextRecord(
            ctx.id,
            ctx.token_budget,
            ctx.trigger_ratio,
            PolicySpec(policy["strategy"], policy["config"]),
            {} if metadata == "{}" else loads(metadata),
            ctx.status,
            ctx.version,
            ctx.last_seq,
            ctx.total_tokens,
            list(ctx.prefix),
            ctx.live_from_seq,
            ctx.live_base_tokens,
            ctx.created_at,
            ctx.updated_at,
            ctx.calibration,
            ctx.calibration_samples,
        )

    def keep(
        self,
        staged: dict[str, tuple[Any, ...]],
        logged: dict[str, list[tuple[Any, ...]]],
        limit: int,
    ) -> None:
        """After a COMMIT: the batch's context rows are the newest known ones,
        and its log rows follow on the cached runs of their contexts (decoded
        from the values inserted, as a read would: no object of the caller's)."""
        known = self.rows
        for cid, ctx in staged.items():
            known.pop(cid, None)
            known[cid] = ctx
        while len(known) > limit:
            oldest = next(iter(known))
            del known[oldest]
            self._decoded.pop(oldest, None)
        cache, epoch = self._cache, self.epoch
        for cid, values in logged.items():
            if not cache.follows(cid, values[0][1], epoch):
                continue  # (the contexts not read lately: no run)
            row = staged.get(cid)
            if row is None or row[_LAST_SEQ] != values[-1][1]:
                continue
            rows = [(message_from_row(v[1:]), row_size(v[3], v[4])) for v in values]
            cache.extend(cid, parse_time(row[_CREATED_AT]), rows, epoch)


_SELECT_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages "
    "WHERE context_id = ? AND seq >= ? AND seq <= ? ORDER BY seq"
)


def read_messages(
    conn: sqlite3.Connection,
    context_id: str,
    from_seq: int,
    to_seq: int,
    max_bytes: int | None = None,
) -> list[StoredMessage]:
    cursor = conn.execute(_SELECT_MESSAGES, (context_id, from_seq, to_seq))
    if max_bytes is None:
        return [message_from_row(r) for r in cursor.fetchall()]
    out: list[StoredMessage] = []
    size = 0
    try:
        for row in cursor:  # stepped one row at a time: the rows past the cap are never read
            out.append(message_from_row(row))
            size += len(row[2]) + len(row[3])
            if size >= max_bytes:
                break
    finally:
        cursor.close()  # ends the statement (and its read snapshot) when it stopped early
    return out


def read_messages_sized(
    conn: sqlite3.Connection, context_id: str, from_seq: int, to_seq: int
) -> SizedRows:
    """``read_messages``, each row with the size of its JSON (for ``RowCache``)."""
    rows = conn.execute(_SELECT_MESSAGES, (context_id, from_seq, to_seq)).fetchall()
    return [(message_from_row(r), row_size(r[2], r[3])) for r in rows]
