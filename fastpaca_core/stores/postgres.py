"""``postgresql://...``: several API processes or machines sharing one database.

asyncpg with a connection pool. Order comes from the database: a write on a
context commits only if the context row is still the one its operation read,
and the ``(context_id, seq)`` primary key backs that up. An operation first
runs optimistically (:class:`PgTx`): it reads the row without a lock, and all
its writes go in one statement that commits by itself and applies only if the
row's ``xmin`` is unchanged, so an append is 2 round trips (3 with an
idempotency key), 1 on a context this process wrote last (it keeps the row as
written). Under load such writes on different contexts share statements
(:mod:`._pggroup`). An operation that lost that race, or needs a lock
(creating a context, leases, summaries), runs again in a transaction that
locks the row (``SELECT ... FOR UPDATE``), its writes still sent as one
statement. Schema migrations (:mod:`._pgschema`) are a numbered list applied
under an advisory lock and recorded in ``schema_version``.

URL options: ``?schema=NAME`` puts the tables in their own schema (created on
open). Multi-host URLs with ``target_session_attrs=read-write``
(``postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write``) connect
to whichever host is the primary, so after a failover the pool's new
connections find the promoted one.

Outages: connecting, and the work of one operation on its connection (every
statement and the commit), each get ``timeout`` seconds; past that, or on any
error that means the server cannot be reached, the operation raises
:class:`StoreUnavailable` (HTTP 503) and its connection is dropped, so the pool
reconnects once the server is back. (Waiting for a free pooled connection is
load, not an outage, and is not timed.) A failure before the commit (``COMMIT``,
or the optimistic write statement) was sent is retried once on a fresh
connection, as is a commit refused unsent by a pooled connection the server
had ended (after a restart); a connection lost during it leaves the outcome
unknown and is reported as such: retrying with the same idempotency key is
safe either way.

After each committed write the store sends a hint ``NOTIFY fastpaca_<schema>``
with ``token|version|id`` (coalesced, after the commit, not inside it: see
:mod:`._pglisten` for why and what that costs); :meth:`PostgresStore.listen`
lets another process hear about changes it did not make (``token`` tells a
store's own writes apart).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the PostgreSQL store needs asyncpg: from the checkout, "
        ".venv/bin/pip install -e '.[postgres]'"
    ) from exc

from ..errors import FastpacaError, StoreError, StoreUnavailable, ValidationError
from ..events import Event
from ..jsonutil import loads
from ..model import ContextRecord, StoredMessage, SummaryRecord
from ._codec import (
    CONTEXT_COLUMNS,
    SUMMARY_COLUMNS,
    context_from_row,
    message_from_row,
    summary_from_row,
)
from ._pggroup import GROUP_SQL, GroupWriter, Write, group_args
from ._pglisten import FAILED, UNAVAILABLE, Listener, Notifier, parse_hints
from ._pgschema import MIGRATE_TIMEOUT, channel_of, create_schema, migrate, split_url
from ._pgschema import MIGRATIONS as MIGRATIONS  # where older tools found it
from ._pgtx import (
    READ_MESSAGES_CAPPED_SQL,
    READ_MESSAGES_SQL,
    Conflict,
    Lease,
    NeedLock,
    PgTx,
    drop,
    no_reset,
    protocol_of,
    sent,
)
from ._rowcache import Plan, RowCache, SizedRows, row_size
from .base import Op, Store, tenant_range, window_start

__all__ = ["PostgresStore"]

R = TypeVar("R")
_RETRIES = 5  # for serialisation failures, deadlocks, a lost insert race
_KNOWN_ROWS = 1024  # context rows kept as last written (the contexts in use)
_CONTENDED_FOR = 1.0  # seconds a context that lost an optimistic race is written locked
DEFAULT_TIMEOUT = 3.0

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

_UNAVAILABLE = UNAVAILABLE
# an open connection that turned out dead, or one to a standby: worth one more try
_LOST: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    # a pooled connection that heard its server's last words (the FATAL of a
    # terminated backend) but not yet its close refuses the next statement
    # with this, before sending it
    asyncpg.exceptions.InternalClientError,
    ConnectionResetError,
    BrokenPipeError,
)
# a parameter refused by asyncpg's own check, before the statement is sent: an
# InterfaceError, so it would otherwise read as a lost connection, though no
# retry changes it and the connection is left as it was. (asyncpg 0.32 raises
# asyncpg.DataError instead, a PostgresError: a StoreError as it is.)
_UNENCODABLE = asyncpg.exceptions._base.DataError
_RETRYABLE: tuple[type[BaseException], ...] = (
    asyncpg.UniqueViolationError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


def _in_use(exc: BaseException) -> bool:
    """The error came from a connection that was open (not from connecting)."""
    return isinstance(exc, _LOST)


class _Stale(Exception):
    """An attempt that started from a known row found (or may have found) it out
    of date: the operation runs again on the row as read."""


class _Unknown(StoreUnavailable):
    """The connection was lost while ``COMMIT`` was under way."""

    def __init__(self) -> None:
        super().__init__(
            "PostgreSQL went away during COMMIT, so this write may or may not "
            "have been applied; retry it with the same Idempotency-Key"
        )


class _ContextTurn:
    """The operations of this process on one context, run one at a time."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # running or waiting


class PostgresStore(Store):
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float | None = None,
    ) -> None:
        self.url = url
        self._dsn, self.schema = split_url(url)
        self._min_size = min_size
        self._max_size = max_size
        self.timeout = timeout or DEFAULT_TIMEOUT
        self._pool: asyncpg.Pool | None = None
        self.channel = channel_of(self.schema)
        self._token = uuid.uuid4().hex
        self._notifier = Notifier(self._send_hints, self._token)
        self._group = GroupWriter(self._send_group)
        # context id -> when an optimistic write on it last lost a race
        self._contended: dict[str, float] = {}
        self._known: dict[str, tuple[tuple[Any, ...], int]] = {}  # see _remember
        self._shared: dict[str, float] = {}  # context id -> when its known row was stale
        self._turns: dict[str, _ContextTurn] = {}  # contexts with operations under way
        self._rows = RowCache()  # decoded log rows, for the next window read
        self._renewed = 0  # how many times the pool's connections were renewed (_renew)

    async def open(self) -> None:
        if self._pool is not None:
            return
        # quoted, as the schema is created: unquoted, PostgreSQL would fold it to lower case
        settings = {"search_path": f'"{self.schema}"'} if self.schema else None
        try:
            if self.schema:
                conn = await asyncpg.connect(self._dsn, timeout=self.timeout)
                try:
                    await create_schema(conn, self.schema, self.timeout)
                finally:
                    await conn.close(timeout=self.timeout)
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=settings,
                timeout=self.timeout,  # connecting
                # no command_timeout: _guard's one timer bounds an operation's
                # statements together, and a timer per statement costs CPU
                reset=no_reset,
                # idle connections stay open (up to max_size): asyncpg's idle
                # timer is re-armed on every release, ~4% of a worker's CPU
                max_inactive_connection_lifetime=0,
            )
            async with self._pool.acquire(timeout=MIGRATE_TIMEOUT) as pooled:
                await migrate(pooled)
        except _UNAVAILABLE as exc:
            await self.close()
            raise StoreUnavailable(f"cannot reach PostgreSQL: {exc}") from exc
        except asyncpg.PostgresError as exc:
            await self.close()
            raise StoreError(f"PostgreSQL error while opening the store: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._group.drain()
            await self._notifier.stop(self.timeout)
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except FAILED:
                pool.terminate()
            self._rows.clear()

    async def _guard(self, fn: Callable[[Conn], Awaitable[R]]) -> R:
        """Run ``fn`` on a pooled connection (see :meth:`_guard_lease`)."""

        async def eager(lease: Lease) -> R:
            return await fn(await lease.get())

        return await self._guard_lease(eager)

    async def _guard_lease(self, fn: Callable[[Lease], Awaitable[R]]) -> R:
        """Run ``fn`` with a lease on a pooled connection, translating driver errors.

        The lease takes its connection at the first statement. Waiting for a
        free pooled connection is load, not an outage, and is not timed;
        connecting is (``timeout``), and so is the work on the connection: when
        it runs past ``timeout`` the connection is terminated, which fails
        whatever ``fn`` awaits at once (the server rolls back), so the caller
        hears within the deadline and the pool connects afresh. A connection
        found dead inside ``fn`` (stale after a restart) is replaced and ``fn``
        tried once more, unless the deadline passed, on a connection made
        afresh (see :meth:`_renew`); serialisation failures, deadlocks and a lost
        insert race are retried a few times.
        """
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        retried_lost = False
        for remaining in range(_RETRIES, 0, -1):
            renewed = self._renewed
            lease = Lease(pool, self.timeout)
            try:
                try:
                    return await fn(lease)
                except FAILED as exc:
                    lost = isinstance(exc, _UNAVAILABLE) and not isinstance(exc, _UNENCODABLE)
                    if lost and lease.conn is not None:
                        drop(lease.conn)  # e.g. a standby after failover: never reuse it
                    raise
                finally:
                    await lease.release()
            except FastpacaError:
                raise
            except _UNENCODABLE as exc:
                raise StoreError(f"a value the database cannot take: {exc}") from exc
            except _UNAVAILABLE as exc:
                if lease.expired:
                    raise StoreUnavailable(
                        f"PostgreSQL did not answer within {self.timeout:g} s"
                    ) from exc
                if retried_lost or remaining == 1 or not _in_use(exc):
                    raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
                retried_lost = True
                await self._renew(pool, renewed)
            except _RETRYABLE as exc:
                if remaining == 1:
                    raise StoreError(f"PostgreSQL error: {exc}") from exc
            except asyncpg.PostgresError as exc:
                raise StoreError(f"PostgreSQL error: {exc}") from exc
        raise AssertionError("unreachable")

    async def _renew(self, pool: asyncpg.Pool, renewed: int) -> None:
        """A pooled connection was found lost: replace each one when next taken.

        A restart or a failover ends every connection, and a connection hears
        of it only when it next reads: until then the pool takes it for alive,
        and hands it out before a connection it knows is gone (the one just
        dropped), so the retry would likely meet another dead one. Expiring
        them (asyncpg's pool generation) makes the retry's connection new. Only
        once for the connections lost together (``renewed``: the count when the
        failed attempt began): a burst of operations that each found one dead
        does not make the pool connect over and over. Costs one reconnect per
        pooled connection, after a loss only.
        """
        if renewed == self._renewed:
            self._renewed += 1
            await pool.expire_connections()

    async def ping(self) -> None:
        async def ping(conn: Conn) -> None:
            await conn.fetchval("SELECT 1")

        await self._guard(ping)

    async def run(self, context_id: str, op: Op[R], *, reply_before_sync: bool = False) -> R:
        """Run ``op``: optimistically first (one round trip for an append on a
        context this process wrote last, shared with other appends under load),
        then locked when it must be (see :class:`PgTx`).

        Operations on one context run one at a time in a process: a second one
        waits in the process, holding no pooled connection (a busy context
        cannot starve the others of connections, and its writes do not queue
        on the row lock), then starts from the row the first one wrote. The
        wait counts against ``timeout``: when the database stalls, the ones
        waiting hear 503 with the one under way, not one ``timeout`` after
        another.

        Straight to the locked path when the optimistic attempt would likely
        lose: one lost a race on the context within the last
        ``_CONTENDED_FOR`` seconds (another process writes it too).

        ``reply_before_sync`` is ignored: another process may read the context
        as soon as this one answers, so the answer waits for the commit.
        """
        del reply_before_sync
        turns = self._turns
        turn = turns.get(context_id)
        if turn is None:
            turn = turns[context_id] = _ContextTurn()
        turn.users += 1
        try:
            lock = turn.lock
            if turn.users > 1:  # waiting for its turn counts against the timeout
                try:
                    async with asyncio.timeout(self.timeout):
                        await lock.acquire()
                except TimeoutError:
                    raise StoreUnavailable(
                        f"PostgreSQL did not answer within {self.timeout:g} s (the "
                        "operations before this one on the context are still under way)"
                    ) from None
            else:
                await lock.acquire()  # free: no suspension
            try:
                return await self._run(context_id, op)
            finally:
                lock.release()
        finally:
            turn.users -= 1
            if not turn.users:
                del turns[context_id]

    async def _run(self, context_id: str, op: Op[R]) -> R:
        since = self._contended.get(context_id)
        if since is None or time.monotonic() - since > _CONTENDED_FOR:
            known = self._known.get(context_id)
            if known is not None:  # no read: the write checks the row is as known
                try:
                    return await self._guard_lease(
                        lambda lease: self._attempt(lease, context_id, op, False, known)
                    )
                except NeedLock:
                    self._known.pop(context_id, None)
                except _Stale:  # another process writes this context too
                    self._known.pop(context_id, None)
                    if len(self._shared) >= 10_000:
                        self._shared.clear()
                    self._shared[context_id] = time.monotonic()
            try:
                return await self._guard_lease(
                    lambda lease: self._attempt(lease, context_id, op, False)
                )
            except NeedLock:
                pass
            except Conflict:
                if len(self._contended) >= 10_000:
                    self._contended.clear()
                self._contended[context_id] = time.monotonic()
        return await self._guard_lease(lambda lease: self._attempt(lease, context_id, op, True))

    async def _attempt(
        self,
        lease: Lease,
        context_id: str,
        op: Op[R],
        locked: bool,
        known: tuple[tuple[Any, ...], int] | None = None,
    ) -> R:
        tx = PgTx(lease, context_id, locked=locked, known=known)
        committing = False
        protocol: Any = None  # of the connection the commit goes to, and
        before = 0  # its count of statements sent then (see sent)
        try:
            if locked:
                conn = await lease.get()
                async with conn.transaction():
                    result = await op(tx)
                    await tx.flush()
                    protocol = protocol_of(conn)
                    before = sent(protocol)
                    committing = True  # leaving the block sends COMMIT
            else:
                try:
                    result = await op(tx)
                except FastpacaError as exc:
                    if tx.from_known:  # decided on a row that may be out of date
                        raise _Stale from exc
                    raise
                if tx.from_known and not tx.pending:
                    raise _Stale  # an answer no write confirmed the row for
                group = self._group
                lane = tx.groupable and group.claim()
                if tx.groupable and not lane:  # sent with others' (see _pggroup)
                    await lease.release()
                    xmin = await group.write(tx.group_write())
                    if xmin is None:
                        raise _Stale if tx.from_known else Conflict
                    tx.written_xmin = xmin
                else:
                    try:
                        if tx.pending:
                            conn = await lease.get()  # connecting is not committing
                            protocol = protocol_of(conn)
                            before = sent(protocol)
                        committing = tx.pending  # the one write statement commits by itself
                        await tx.flush()
                    except Conflict:
                        if tx.from_known:  # another process wrote the row since
                            raise _Stale from None
                        raise
                    finally:  # also when connecting failed
                        if lane:
                            group.done()
        except _UNAVAILABLE as exc:
            # a commit never sent (the connection was found dead first) changed
            # nothing: _guard_lease tries the operation again on a fresh one
            if committing and sent(protocol) != before:
                if lease.conn is not None:
                    drop(lease.conn)
                raise _Unknown() from exc
            raise
        if tx.version is not None:
            self._notifier.add(context_id, tx.version)
        if tx.saved is not None and tx.written_xmin is not None:
            self._remember(context_id, tx.saved, tx.written_xmin)
        return result

    async def _send_group(self, writes: list[Write]) -> dict[str, int]:
        """One group statement (see :mod:`._pggroup`): the applied contexts'
        new ``xmin`` by id."""
        args = group_args(writes)

        async def send(conn: Conn) -> dict[str, int]:
            protocol = protocol_of(conn)
            before = sent(protocol)
            try:
                rows = await conn.fetch(GROUP_SQL, *args)
            except _UNAVAILABLE as exc:
                if sent(protocol) == before:  # refused before it was sent: see _guard_lease
                    raise
                drop(conn)
                raise _Unknown() from exc
            return {row[0]: row[1] for row in rows}

        return await self._guard(send)

    def _remember(self, context_id: str, row: tuple[Any, ...], xmin: int) -> None:
        """Keep the row as written: this process's next operation on the context
        starts from it and skips the read (its write still checks ``xmin``).

        Not for a context another process wrote within ``_CONTENDED_FOR``
        seconds: its known row would mostly be out of date, and each attempt
        from it one wasted round trip.
        """
        since = self._shared.get(context_id)
        if since is not None and time.monotonic() - since <= _CONTENDED_FOR:
            return
        known = self._known
        known.pop(context_id, None)
        if len(known) >= _KNOWN_ROWS:
            del known[next(iter(known))]  # the least recently written
        known[context_id] = (row, xmin)  # column values; each operation decodes its own copy

    async def _send_hints(self, payloads: list[str]) -> None:
        async def send(conn: Conn) -> None:
            await conn.execute(
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", self.channel, payloads
            )

        await self._guard(send)

    async def get_context(self, context_id: str) -> ContextRecord | None:
        async def read(conn: Conn) -> ContextRecord | None:
            row = await conn.fetchrow(
                f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = $1", context_id
            )
            return None if row is None else context_from_row(row)

        return await self._guard(read)

    async def read_window(
        self, context_id: str, tail: int = 0
    ) -> tuple[ContextRecord | None, list[StoredMessage]]:
        async def read(conn: Conn) -> tuple[ContextRecord | None, list[StoredMessage]]:
            row = await conn.fetchrow(
                f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = $1", context_id
            )
            if row is None:
                return None, []
            ctx = context_from_row(row)
            start = window_start(ctx, tail)
            # as SQLiteStore's, whose fetch blocks (sharing it costs every read a layer)

            async def rows_of(plan: Plan) -> list[StoredMessage] | None:
                fetched: SizedRows = []
                if plan.fetches:
                    first, last = plan.fetch_from, ctx.last_seq
                    found = await conn.fetch(READ_MESSAGES_SQL, context_id, first, last)
                    fetched = [(message_from_row(r), row_size(r[2], r[3])) for r in found]
                return self._rows.complete(plan, fetched)

            rows = await rows_of(self._rows.plan(context_id, ctx.created_at, start, ctx.last_seq))
            if rows is None:  # the rows held were not this log's
                plan = RowCache.afresh(context_id, ctx.created_at, start, ctx.last_seq)
                rows = await rows_of(plan)
            assert rows is not None  # a fresh read is never refused
            return ctx, rows

        return await self._guard(read)

    async def list_contexts(
        self, limit: int, after: tuple[datetime, str] | None, tenant: str | None = None
    ) -> list[ContextRecord]:
        where: list[str] = []
        args: list[object] = []
        if tenant == "":
            where.append("strpos(id, '/') = 0")
        elif tenant is not None:
            # byte order (index contexts_by_id_bytes): under a linguistic collation
            # '/' may sort anywhere, and the range would miss ids
            low, high = tenant_range(tenant)
            args.extend((low, high))
            where.append(f'id COLLATE "C" >= ${len(args) - 1} AND id COLLATE "C" < ${len(args)}')
        if after is not None:
            args.extend(after)
            where.append(f"(updated_at, id) < (${len(args) - 1}, ${len(args)})")
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        args.append(limit)
        sql = (
            f"SELECT {CONTEXT_COLUMNS} FROM contexts {clause}"
            f"ORDER BY updated_at DESC, id DESC LIMIT ${len(args)}"
        )

        async def read(conn: Conn) -> list[ContextRecord]:
            rows = await conn.fetch(sql, *args)
            return [context_from_row(r) for r in rows]

        return await self._guard(read)

    async def read_messages(
        self, context_id: str, from_seq: int, to_seq: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        async def read(conn: Conn) -> list[StoredMessage]:
            if max_bytes is None:
                rows = await conn.fetch(READ_MESSAGES_SQL, context_id, from_seq, to_seq)
            else:
                rows = await conn.fetch(
                    READ_MESSAGES_CAPPED_SQL, context_id, from_seq, to_seq, max_bytes
                )
            return [message_from_row(r) for r in rows]

        return await self._guard(read)

    async def read_events(self, context_id: str, after_version: int, limit: int) -> list[Event]:
        async def read(conn: Conn) -> list[Event]:
            rows = await conn.fetch(
                "SELECT version, type, data FROM events WHERE context_id = $1 AND version > $2 "
                "ORDER BY version LIMIT $3",
                context_id,
                after_version,
                limit,
            )
            return [Event(context_id, r[1], int(r[0]), loads(r[2])) for r in rows]

        return await self._guard(read)

    async def list_summaries(
        self, context_id: str, limit: int, before_version: int | None
    ) -> list[SummaryRecord]:
        async def read(conn: Conn) -> list[SummaryRecord]:
            rows = await conn.fetch(
                f"SELECT {SUMMARY_COLUMNS} FROM summaries WHERE context_id = $1 "
                "AND ($2::bigint IS NULL OR version < $2) ORDER BY version DESC LIMIT $3",
                context_id,
                before_version,
                limit,
            )
            return [summary_from_row(r) for r in rows]

        return await self._guard(read)

    async def listen(
        self,
        callback: Callable[[str, int], None],
        on_reconnect: Callable[[], None] | None = None,
    ) -> Callable[[], Awaitable[None]]:
        """Call ``callback(context_id, version)`` for each change other stores commit.

        Uses one dedicated connection, which reconnects by itself when lost (then
        ``on_reconnect()`` is called: changes made meanwhile were not heard);
        returns the coroutine function that stops listening.
        """

        def on_notify(payload: str) -> None:
            for token, context_id, version in parse_hints(payload):
                if token != self._token:
                    callback(context_id, version)

        listener = Listener(
            self._dsn, self.channel, on_notify, on_reconnect=on_reconnect, timeout=self.timeout
        )
        await listener.start()
        return listener.stop

    async def drop_schema(self) -> None:
        """Remove this store's schema and everything in it (tests and tooling)."""
        if not self.schema:
            raise ValidationError("store", "drop_schema needs a URL with ?schema=")

        async def drop(conn: Conn) -> None:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

        await self._guard(drop)
        self._rows.clear()
