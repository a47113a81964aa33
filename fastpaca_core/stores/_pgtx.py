"""The PostgreSQL store's operations on one context: reads at once, writes in one statement.

:class:`PgTx` is the :class:`~.base.Tx` that :class:`~.postgres.PostgresStore`
hands an operation, optimistic (no lock; the one write statement checks the
context row's ``xmin``) or locked (``SELECT ... FOR UPDATE`` in a transaction).
Its connection comes from a :class:`Lease` on the pool; :func:`sent` tells
whether a statement that failed was ever sent on it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Protocol

import asyncpg

from ..errors import StoreError
from ..events import Event
from ..jsonutil import dumps_str, loads
from ..model import ContextRecord, StoredMessage, SummaryRecord
from ..window import WindowItem
from ._codec import (
    CONTEXT_COLUMNS,
    MESSAGE_COLUMNS,
    SUMMARY_COLUMNS,
    RawMessage,
    context_from_row,
    context_values,
    message_from_row,
    summary_values,
)
from ._pggroup import Write
from ._pglisten import FAILED
from .base import IdempotencyRecord

__all__ = [
    "READ_MESSAGES_CAPPED_SQL",
    "READ_MESSAGES_SQL",
    "Conflict",
    "ConnSource",
    "Lease",
    "NeedLock",
    "PgTx",
    "drop",
    "no_reset",
    "protocol_of",
    "release_conn",
    "sent",
]

log = logging.getLogger("fastpaca.store")

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class ConnSource(Protocol):
    """Where an operation's connection comes from: taken from the pool at the
    first statement that needs it (an operation that only writes, from a known
    row, may never need one)."""

    async def get(self) -> Conn: ...


async def release_conn(
    pool: asyncpg.Pool, conn: asyncpg.pool.PoolConnectionProxy, timeout: float
) -> None:
    """Give ``conn`` back to the pool. When resetting it fails the pool drops
    it; that must not turn what ``fn`` did (perhaps a commit) into an error."""
    try:
        await pool.release(conn, timeout=timeout)
    except FAILED as exc:
        log.debug("dropped a broken pooled connection", extra={"fields": {"error": str(exc)}})


async def no_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing to send.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`` on every release, a round trip per operation, for
    session state this store never leaves behind: its one advisory lock
    (migrations) is transaction-scoped, it opens no cursors, sets nothing per
    session (``search_path`` is a connection parameter), and LISTENs only on
    the listener's own connection. asyncpg still rolls back a transaction left
    open and drops client-side listeners before calling this.
    """


def drop(conn: Conn) -> None:
    """Terminate ``conn`` so the pool never hands it out again. A pooled
    connection that was already lost is detached from its proxy, which then
    refuses every call (an ``InterfaceError``, even for ``is_closed``):
    nothing is left to terminate then."""
    try:
        if not conn.is_closed():
            conn.terminate()
    except asyncpg.InterfaceError:
        pass


def protocol_of(conn: Conn) -> Any:
    """asyncpg's protocol under ``conn`` (None when the connection is gone),
    taken before a statement that commits, to ask :func:`sent` afterwards.
    Through a pooled connection's own connection: its proxy would look the
    attribute up by its slower fallback (~1 us against ~0.2 us a write)."""
    return getattr(getattr(conn, "_con", conn), "_protocol", None)


def sent(protocol: Any) -> int:
    """How many statements the protocol has written to its socket.

    asyncpg counts a statement (``queries_count``) once it has handed its
    messages to the transport, before any answer; one refused before that (a
    connection found lost or broken, a parameter it cannot encode) leaves the
    count as it was. A commit whose count did not move was never sent, so its
    outcome is known: nothing happened, and it may be tried again.
    """
    return 0 if protocol is None else int(protocol.queries_count)


class Lease:
    """One operation's pooled connection, taken at its first statement (see
    :meth:`.postgres.PostgresStore._guard_lease`); from then on its work has ``timeout``
    seconds, after which the connection is terminated (``expired``)."""

    __slots__ = ("_pool", "_timeout", "_timer", "conn", "expired")

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self.conn: asyncpg.pool.PoolConnectionProxy | None = None
        self.expired = False

    async def get(self) -> Conn:
        conn = self.conn
        if conn is None:
            conn = self.conn = await self._pool.acquire()
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)
        return conn

    def _expire(self) -> None:
        self.expired = True
        if self.conn is not None:
            drop(self.conn)

    async def release(self) -> None:
        """Give the connection back (if one was taken); the lease may take
        another later."""
        conn, self.conn = self.conn, None
        if conn is not None:
            if self._timer is not None:
                self._timer.cancel()
            await release_conn(self._pool, conn, self._timeout)


_UPDATE_COLUMNS = [c.strip() for c in CONTEXT_COLUMNS.split(",")][1:]
_SAVE_SQL = "UPDATE contexts SET {} WHERE id = $1".format(
    ", ".join(f"{c} = ${i}" for i, c in enumerate(_UPDATE_COLUMNS, start=2))
)
_CREATE_SQL = "INSERT INTO contexts ({}) VALUES ({})".format(
    CONTEXT_COLUMNS, ", ".join(f"${i}" for i in range(1, len(_UPDATE_COLUMNS) + 2))
)
_INSERT_SUMMARY_SQL = (
    f"INSERT INTO summaries (context_id, {SUMMARY_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)
# the database's clock decides expiry, so processes with skewed clocks agree
_TAKE_LEASE_SQL = (
    "INSERT INTO leases (context_id, holder, expires_at) "
    "VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) "
    "ON CONFLICT (context_id) DO UPDATE SET holder = EXCLUDED.holder, "
    "expires_at = EXCLUDED.expires_at "
    "WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= clock_timestamp() "
    "RETURNING holder"
)
READ_MESSAGES_SQL = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages "
    "WHERE context_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
)
# the rows up to the one whose stored JSON brings the total to $4 bytes: each row's
# size from its TOAST header (octet_length), the rows past it never detoasted
READ_MESSAGES_CAPPED_SQL = (
    f"SELECT {MESSAGE_COLUMNS} FROM (SELECT {MESSAGE_COLUMNS}, "
    "octet_length(parts) + octet_length(metadata) AS own, "
    "sum(octet_length(parts) + octet_length(metadata)) OVER (ORDER BY seq) AS upto "
    "FROM messages WHERE context_id = $1 AND seq >= $2 AND seq <= $3) AS sized "
    "WHERE upto - own < $4 ORDER BY seq"
)


class NeedLock(Exception):
    """An optimistic attempt met something only a locked transaction can do."""


class Conflict(Exception):
    """The context row changed between an optimistic attempt's read and its write."""


@functools.lru_cache(maxsize=64)
def _flush_sql(ctx_write: str, cas: bool, messages: bool, events: bool, idem: bool) -> str:
    """One statement with every write of an operation (data-modifying CTEs).

    ``ctx_write``: ``update``, ``insert`` or ``none``. With ``cas`` the context
    row is written only if its ``xmin`` is still the one read (the last
    parameter), and every other write hangs off that row (``FROM c``), so either
    all of them happen or none. The statement returns how many context rows
    matched (0: an optimistic attempt lost a race) and the row's ``xmin`` after
    the write. Few shapes, so asyncpg's statement cache keeps each one prepared.
    """
    n = 1 if ctx_write == "none" else 1 + len(_UPDATE_COLUMNS)  # $1 = id, the columns
    ctes: list[str] = []
    if ctx_write == "update":
        where = f" AND xmin = ${n + 1}::xid" if cas else ""
        ctes.append(f"c AS ({_SAVE_SQL}{where} RETURNING xmin AS x)")
    elif ctx_write == "insert":
        ctes.append(f"c AS ({_CREATE_SQL} RETURNING xmin AS x)")
    else:
        where = f" AND xmin = ${n + 1}::xid" if cas else ""
        ctes.append(f"c AS (SELECT xmin AS x FROM contexts WHERE id = $1{where} FOR UPDATE)")
    i = n + 1 + (1 if cas else 0)
    if messages:
        ctes.append(
            f"m AS (INSERT INTO messages (context_id, {MESSAGE_COLUMNS}) "
            f"SELECT $1, u.* FROM c, unnest(${i}::bigint[], ${i + 1}::text[], ${i + 2}::text[], "
            f"${i + 3}::text[], ${i + 4}::bigint[], ${i + 5}::bigint[], ${i + 6}::bigint[], "
            f"${i + 7}::timestamptz[]) AS u)"
        )
        i += 8
    if events:
        ctes.append(
            "e AS (INSERT INTO events (context_id, version, type, data) "
            f"SELECT $1, u.* FROM c, "
            f"unnest(${i}::bigint[], ${i + 1}::text[], ${i + 2}::text[]) AS u)"
        )
        i += 3
    if idem:
        ctes.append(
            "k AS (INSERT INTO idempotency_keys (context_id, key, request_hash, response, "
            f"created_at) SELECT $1, ${i}, ${i + 1}, ${i + 2}, ${i + 3}::timestamptz FROM c)"
        )
    return f"WITH {', '.join(ctes)} SELECT count(*), min(x::text::bigint) FROM c"


class PgTx:
    """An operation's view of one context.

    Reads go to the database at once; writes are kept and sent together in one
    statement when the operation returns (:meth:`flush`). ``locked``: the
    operation runs in a transaction that locked the context row
    (``SELECT ... FOR UPDATE``). Not locked (optimistic): reads are plain
    autocommit reads, and the one write statement commits by itself, on the
    condition that the context row is still the version read (its ``xmin``);
    when it is not, :class:`Conflict` sends the operation round again, locked.
    """

    def __init__(
        self,
        conn: ConnSource,
        context_id: str,
        *,
        locked: bool,
        known: tuple[tuple[Any, ...], int] | None = None,
    ) -> None:
        self._conn = conn  # taken at the first statement
        self.context_id = context_id
        self.locked = locked
        # the context row as this process last wrote it, and its xmin then: an
        # optimistic attempt starts from it instead of reading the row
        self._known = None if locked else known
        self.from_known = False
        self.saved: tuple[Any, ...] | None = None  # the row's column values as written
        self.written_xmin: int | None = None  # its xmin after the write
        self._xmin: int | None = None
        self._loaded = False
        self._ctx: tuple[Any, ...] | None = None
        self._created = False
        self._messages: list[StoredMessage] = []
        self._events: list[Event] = []
        self._idem: IdempotencyRecord | None = None
        self.version: int | None = None  # the context's version written, for NOTIFY

    def _need_lock(self) -> None:
        if not self.locked:
            raise NeedLock

    async def load_context(self) -> ContextRecord | None:
        if self._known is not None:
            known, self._known = self._known, None
            self._loaded = self.from_known = True
            self._xmin = known[1]
            return context_from_row(known[0])  # decoded afresh: shares nothing
        lock = " FOR UPDATE" if self.locked else ""
        conn = await self._conn.get()
        row = await conn.fetchrow(
            f"SELECT {CONTEXT_COLUMNS}, xmin FROM contexts WHERE id = $1{lock}", self.context_id
        )
        self._loaded = True
        if row is None:
            return None
        self._xmin = row[-1]
        return context_from_row(row)

    async def save_context(self, ctx: ContextRecord, *, created: bool) -> None:
        if created:
            self._need_lock()  # a new row: nothing to compare with
        elif self._xmin is None:
            self._need_lock()
        self._ctx = self.saved = context_values(ctx)  # JSON text: later changes cannot reach it
        self._created = created
        self.version = ctx.version

    async def insert_messages(self, rows: list[StoredMessage]) -> None:
        self._messages.extend(rows)

    async def read_messages(self, from_seq: int, to_seq: int) -> list[StoredMessage]:
        conn = await self._conn.get()
        rows = await conn.fetch(READ_MESSAGES_SQL, self.context_id, from_seq, to_seq)
        found = [message_from_row(r) for r in rows]
        pending = [r for r in self._messages if from_seq <= r.seq <= to_seq]
        return sorted([*found, *pending], key=lambda r: r.seq) if pending else found

    async def read_items(self, from_seq: int, to_seq: int) -> list[WindowItem]:
        """The rows as window items, decoded only when something needs them (a
        compaction mostly needs each row's tokens and whether it holds a tool call)."""
        conn = await self._conn.get()
        rows = await conn.fetch(READ_MESSAGES_SQL, self.context_id, from_seq, to_seq)
        of_raw = WindowItem.of_raw
        items = [of_raw(RawMessage(r)) for r in rows]
        pending = [r for r in self._messages if from_seq <= r.seq <= to_seq]
        if not pending:
            return items
        items.extend(WindowItem.of_row(r) for r in pending)
        return sorted(items, key=lambda item: item.from_seq)

    async def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        if self._idem is not None and self._idem.key == key:
            return self._idem
        conn = await self._conn.get()
        row = await conn.fetchrow(
            "SELECT request_hash, response, created_at FROM idempotency_keys "
            "WHERE context_id = $1 AND key = $2",
            self.context_id,
            key,
        )
        if row is None:
            return None
        return IdempotencyRecord(key, row[0], loads(row[1]), row[2])

    async def put_idempotency(self, record: IdempotencyRecord) -> None:
        if self._idem is not None:
            self._need_lock()
            await self._flush_idem()
        self._idem = record

    async def _flush_idem(self) -> None:
        record, self._idem = self._idem, None
        assert record is not None
        conn = await self._conn.get()
        await conn.execute(
            "INSERT INTO idempotency_keys (context_id, key, request_hash, response, created_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            self.context_id,
            record.key,
            record.request_hash,
            dumps_str(record.response),
            record.created_at,
        )

    async def insert_event(self, event: Event) -> None:
        self._events.append(event)

    # rare writes (the summariser's): locked transactions only, sent at once

    async def insert_summary(self, record: SummaryRecord) -> None:
        self._need_lock()
        conn = await self._conn.get()
        await conn.execute(_INSERT_SUMMARY_SQL, self.context_id, *summary_values(record))

    async def take_lease(self, holder: str, ttl: float) -> bool:
        self._need_lock()
        conn = await self._conn.get()
        taken = await conn.fetchval(_TAKE_LEASE_SQL, self.context_id, holder, float(ttl))
        return taken is not None

    async def drop_lease(self, holder: str) -> None:
        self._need_lock()
        conn = await self._conn.get()
        await conn.execute(
            "DELETE FROM leases WHERE context_id = $1 AND holder = $2", self.context_id, holder
        )

    @property
    def pending(self) -> bool:
        return bool(self._ctx is not None or self._messages or self._events or self._idem)

    async def flush(self) -> None:
        """Send the writes kept so far as one statement (see :func:`_flush_sql`)."""
        if not self.pending:
            return
        ctx_write = "none" if self._ctx is None else "insert" if self._created else "update"
        cas = not self.locked
        if cas and self._xmin is None:
            raise NeedLock  # writes on a context that was not read
        if ctx_write == "none" and self.locked and self._xmin is None:
            raise StoreError("an operation wrote to a context it did not find")
        args: list[Any] = list(self._ctx) if self._ctx is not None else [self.context_id]
        if cas:
            args.append(self._xmin)
        rows, events, idem = self._messages, self._events, self._idem
        if rows:
            args += [
                [r.seq for r in rows],
                [r.role for r in rows],
                [dumps_str(r.parts) for r in rows],
                [dumps_str(r.metadata) for r in rows],
                [r.token_count for r in rows],
                [r.cum_tokens for r in rows],
                [r.version for r in rows],
                [r.inserted_at for r in rows],
            ]
        if events:
            args += [
                [e.version for e in events],
                [e.type for e in events],
                [dumps_str(e.data) for e in events],
            ]
        if idem is not None:
            args += [idem.key, idem.request_hash, dumps_str(idem.response), idem.created_at]
        sql = _flush_sql(ctx_write, cas, bool(rows), bool(events), idem is not None)
        conn = await self._conn.get()
        row = await conn.fetchrow(sql, *args)
        assert row is not None  # an aggregate: always one row
        matched, xmin = row[0], row[1]
        if not matched:
            if cas:
                raise Conflict
            raise StoreError("the locked context row was not written")
        if ctx_write != "none":
            self.written_xmin = xmin

    @property
    def groupable(self) -> bool:
        """The writes kept so far can go to the group writer: an optimistic
        update of a context row that was read (or known)."""
        return not (self.locked or self._ctx is None or self._created or self._xmin is None)

    def group_write(self) -> Write:
        """The writes kept so far as a :class:`Write` (when :attr:`groupable`)."""
        assert self._ctx is not None and self._xmin is not None
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        return Write(self._ctx, self._xmin, self._messages, self._events, self._idem, future)
