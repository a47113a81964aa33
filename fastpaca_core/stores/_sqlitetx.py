"""The SQLite store's operations on the write transaction, and its row reads.

:class:`SQLiteTx` is the :class:`~.base.Tx` that :class:`~.sqlite.SQLiteStore`'s
writer hands each operation of a batch; ``read_messages`` reads log rows on
any connection.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from typing import Any

from ..events import Event
from ..jsonutil import dumps_str, loads
from ..model import ContextRecord, StoredMessage, SummaryRecord, format_time
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
from ._rowcache import SizedRows, row_size
from .base import IdempotencyRecord

__all__ = ["SQLiteTx", "is_busy", "read_messages", "read_messages_sized"]


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
    Rows, not records: every load decodes new objects, so nothing a caller
    holds is shared with a later operation.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        context_id: str,
        known: dict[str, tuple[Any, ...]],
        staged: dict[str, tuple[Any, ...]],
    ) -> None:
        self._conn = conn
        self.context_id = context_id
        self.wrote = False  # set before the operation's first write statement
        self._known = known
        self._staged = staged
        self.row: tuple[Any, ...] | None = None

    async def load_context(self) -> ContextRecord | None:
        cid = self.context_id
        row = self.row or self._staged.get(cid) or self._known.get(cid)
        if row is None:
            row = self._conn.execute(
                f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?", (cid,)
            ).fetchone()
            if row is None:
                return None
            self.row = row  # as committed: no operation of this batch saved it
        return context_from_row(row)

    async def save_context(self, ctx: ContextRecord, *, created: bool) -> None:
        self.wrote = True
        self.row = None  # until the statement succeeded
        values = list(context_values(ctx))  # once per append: no generic per-value pass
        values[_CREATED_AT] = format_time(ctx.created_at)
        values[_UPDATED_AT] = format_time(ctx.updated_at)
        row = tuple(values)  # the columns in SELECT order, as a read would return them
        if created:
            self._conn.execute(_INSERT_CONTEXT, values)
        else:
            values.append(values[0])
            self._conn.execute(_UPDATE_CONTEXT, values[1:])
        self.row = row

    async def insert_messages(self, rows: list[StoredMessage]) -> None:
        self.wrote = True
        self._conn.executemany(
            _INSERT_MESSAGES,
            [message_values(self.context_id, r, format_time(r.inserted_at)) for r in rows],
        )

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
