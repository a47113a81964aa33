"""``sqlite:///path``: the embedded default.

WAL journal with ``synchronous=FULL``: an acknowledged write is on disk.

Writes go through one writer task that commits concurrent operations together
(group commit): it takes every queued operation, runs them one after another
on the write connection, then issues one COMMIT (one fsync) for all of them,
off the event loop. An operation that raises is undone alone: one that wrote
nothing yet has nothing to undo, and if one fails after writing, the batch is
rolled back and run again with a SAVEPOINT around each operation. Operations
only touch their ``Tx``, whose calls are short in-memory SQLite statements,
so they run on the loop; ``COMMIT`` (the fsync), and ``BEGIN`` when another
process holds the write lock, run on the writer thread; the commit of the
server's only request in progress runs on the loop, which has nothing else to
do meanwhile (the hand-off cost more than the fsync: ``_commit``). A
caller that asks for it (``reply_before_sync``: the proxy's turns) has its
result before the COMMIT, and reads of its context wait for that COMMIT
(``_answer_early``).

Reads run on the loop's own connection (WAL readers never block the writer),
or on a small thread pool when they would wait for a lock; on the idle write
connection, a read of a context this process committed last, with nothing
written by another connection since, takes the context row and the log rows
the writer committed without reading them (:class:`._sqlitetx.Known`). The
operations' ``Tx`` and its statements are in :mod:`._sqlitetx`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ..errors import StoreError, StoreUnavailable
from ..events import Event
from ..jsonutil import loads
from ..model import ContextRecord, StoredMessage, SummaryRecord, format_time
from ._codec import (
    CONTEXT_COLUMNS,
    SUMMARY_COLUMNS,
    context_from_row,
    summary_from_row,
)
from ._rowcache import Plan, RowCache, SizedRows
from ._sqliteschema import MIGRATIONS, path_of
from ._sqlitetx import Known, SQLiteTx, is_busy, read_messages, read_messages_sized
from .base import Op, Store, tenant_range, window_start

__all__ = ["SQLiteStore"]

log = logging.getLogger("fastpaca.store")

R = TypeVar("R")
MAX_BATCH = 512
KNOWN_ROWS = 1024  # context rows the writer keeps as last committed (see _run_batch)
INLINE_COMMIT_LIMIT = 0.02  # s; a lone commit slower than this on the loop ...
INLINE_PAUSE = 100  # ... sends this many of the next lone commits to the thread


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


@dataclass
class _Job:
    context_id: str
    op: Op[Any]
    future: asyncio.Future[Any] = field(repr=False)
    alone: bool = False  # the caller was the server's only request in progress
    reply_before_sync: bool = False  # see Store.run


class SQLiteStore(Store):
    def __init__(self, url: str, *, read_threads: int = 2, timeout: float | None = None) -> None:
        self.url = url
        self.path = path_of(url)
        self._read_threads = read_threads
        # how long a write waits for another process's write lock before 503
        self.timeout = 3.0 if timeout is None else timeout
        self._write_conn: sqlite3.Connection | None = None
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._loop_conn: sqlite3.Connection | None = None  # reads on the event loop
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._rows = RowCache()  # decoded log rows, for the next window read
        # context rows as this process last committed them (see Known)
        self._knowledge = Known(self._rows)
        self._alone: Callable[[], bool] | None = None  # see use_alone_hint
        # contexts whose writes were answered before their COMMIT: reads wait for it
        self._unsettled: dict[str, asyncio.Event] = {}
        self._inline_pause = 0  # lone commits that go to the thread all the same
        self._in_thread = 0  # calls on the write connection running in the writer thread

    def use_alone_hint(self, alone: Callable[[], bool]) -> None:
        self._alone = alone

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StoreUnavailable(f"directory for the SQLite store does not exist: {directory}")
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="fastpaca-sqlite-writer")
        self._reader_pool = ThreadPoolExecutor(
            self._read_threads, thread_name_prefix="fastpaca-sqlite-reader"
        )
        try:
            self._write_conn = await self._in_writer(_connect, self.path, self.timeout)
            await self._in_writer(self._migrate)
            # from here on the writer waits for a lock only in _begin_waiting
            await self._in_writer(self._write_conn.execute, "PRAGMA busy_timeout = 0")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store at {self.path}: {exc}") from exc
        self._queue = asyncio.Queue()
        # rows known before a close may be stale now, and the new connection's
        # data_version cannot be compared with the old one's
        self._knowledge.forget()
        self._writer = asyncio.create_task(self._write_loop(), name="fastpaca-sqlite-writer")

    async def close(self) -> None:
        if self._writer is None:
            return
        self._queue.put_nowait(None)
        await self._writer
        self._writer = None
        assert self._writer_pool is not None and self._reader_pool is not None
        reader_pool, self._reader_pool = self._reader_pool, None
        reader_pool.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        if self._write_conn is not None:
            await self._in_writer(self._write_conn.close)
            self._write_conn = None
        self._writer_pool.shutdown(wait=True)
        self._rows.clear()

    def _migrate(self) -> None:
        conn = self._write_conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for number, script in enumerate(MIGRATIONS, start=1):
                if number > current:
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def ping(self) -> None:
        await self._read(None, lambda conn: conn.execute("SELECT 1").fetchone())

    # -- threads ---------------------------------------------------------

    async def _in_writer(self, fn: Callable[..., R], *args: Any) -> R:
        assert self._writer_pool is not None
        self._in_thread += 1  # the write connection is the thread's meanwhile
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer_pool, fn, *args)
        finally:
            self._in_thread -= 1

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self.timeout)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._conns_lock:
                self._read_conns.append(conn)
        return conn

    def _loop_reader(self) -> sqlite3.Connection:
        writer = self._write_conn
        if writer is not None and not self._in_thread and not writer.in_transaction:
            return writer
        conn = self._loop_conn
        if conn is None:
            conn = self._loop_conn = _connect(self.path, 0.0)
            conn.execute("PRAGMA query_only = ON")
        return conn

    async def _read(self, context_id: str | None, fn: Callable[[sqlite3.Connection], R]) -> R:
        """Run a read on the event loop; in a reader thread only if it would wait.

        In WAL mode a reader does not wait for the writer, and a read is mostly
        Python work (decoding rows) that holds the GIL anyway: the hand-off to a
        thread and back cost more than it overlapped (``bench reads``, 16 clients:
        ~650-730 reads/s through threads, ~930-950 on the loop; p50 1.4-1.9 vs
        1.2 ms). The loop's connection never waits for a lock (busy timeout 0);
        a read that meets one (a checkpoint truncating the WAL, recovery after a
        crash, another process's exclusive lock) is retried in a reader thread,
        which waits up to the store timeout.

        A read of ``context_id`` (of every context: None) first waits for the
        COMMIT of its writes answered before it (:meth:`_answer_early`).
        """
        if self._reader_pool is None:
            raise StoreUnavailable("the SQLite store is not open")
        if self._unsettled:
            await self._settled(context_id)
        try:
            return fn(self._loop_reader())
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise StoreUnavailable(f"SQLite read failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc

        def call() -> R:
            return fn(self._reader_conn())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader_pool, call)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc

    # -- writes ----------------------------------------------------------

    async def run(self, context_id: str, op: Op[R], *, reply_before_sync: bool = False) -> R:
        """See :meth:`Store.run`; with ``reply_before_sync`` the result comes
        before the COMMIT, which follows at once (:meth:`_answer_early`)."""
        if self._writer is None:
            raise StoreUnavailable("the SQLite store is not open")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        alone = self._alone is not None and self._alone()  # asked in the caller's task
        self._queue.put_nowait(_Job(context_id, op, future, alone, reply_before_sync))
        return await future

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            job = await self._queue.get()
            if job is None:
                break
            jobs = [job]
            while len(jobs) < MAX_BATCH and not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    stopping = True
                    break
                jobs.append(more)
            try:
                await self._run_batch(jobs)
            except sqlite3.Error as exc:  # a SAVEPOINT / ROLLBACK TO failed: disk trouble
                await self._abort_batch(jobs, exc)
        while not self._queue.empty():  # nothing may be left waiting forever
            leftover = self._queue.get_nowait()
            if leftover is not None and not leftover.future.done():
                leftover.future.set_exception(StoreUnavailable("the SQLite store is closing"))

    async def _abort_batch(self, jobs: list[_Job], exc: sqlite3.Error) -> None:
        """Fail every unanswered job of a batch that broke down; the writer goes on."""
        conn = self._write_conn
        assert conn is not None
        self._knowledge.forget()
        if conn.in_transaction:
            try:
                await self._in_writer(conn.execute, "ROLLBACK")
            except sqlite3.Error:
                pass  # nothing was committed; the error below reports the failure
        for job in jobs:
            if not job.future.done():
                failure = StoreUnavailable(f"SQLite write failed: {exc}")
                failure.__cause__ = exc
                job.future.set_exception(failure)

    async def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``: on the loop when the lock is free (the common case,
        one thread hand-off less per batch), else waiting in the writer thread."""
        try:
            conn.execute("BEGIN IMMEDIATE")  # busy timeout 0: never waits here
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        await self._in_writer(self._begin_waiting, conn)

    def _begin_waiting(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    async def _run_batch(self, jobs: list[_Job]) -> None:
        conn = self._write_conn
        assert conn is not None
        outcomes = None
        for savepoints in (False, True):
            try:
                await self._begin(conn)
            except sqlite3.Error as exc:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(StoreUnavailable(f"SQLite is busy: {exc}"))
                return
            self._knowledge.check(conn)
            staged: dict[str, tuple[Any, ...]] = {}
            logged: dict[str, list[tuple[Any, ...]]] = {}
            outcomes = await self._run_ops(conn, jobs, savepoints, staged, logged)
            if outcomes is not None:
                break
            # an operation failed after writing: undo the batch and run it again.
            # BEGIN follows ROLLBACK with no await between them; a savepoint
            # around the batch instead would keep the lock, but costs every batch
            # (-15 to -30% appends/s measured), for a race of microseconds.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        assert outcomes is not None
        early = self._answer_early(outcomes)
        gate = None
        if early:  # reads of their contexts wait for this COMMIT
            gate = asyncio.Event()
            for job in early:
                self._unsettled[job.context_id] = gate
        try:
            if early and self._commits_inline(jobs):
                try:
                    await asyncio.sleep(0)  # the caller's step: it answers its client
                finally:  # what was answered is committed, even if this task is cancelled
                    await self._commit(conn, jobs)
            else:
                await self._commit(conn, jobs)
        except sqlite3.Error as exc:
            self._knowledge.forget()
            try:
                if conn.in_transaction:
                    await self._in_writer(conn.execute, "ROLLBACK")
            except sqlite3.Error:
                pass  # the transaction is gone already; the failure below reports it
            for job in early:  # their callers have their results: the failure is logged
                log.error(
                    "a write answered before its commit was lost: the commit failed",
                    extra={"fields": {"context_id": job.context_id, "error": str(exc)}},
                )
            failed = StoreUnavailable(f"SQLite commit failed: {exc}")
            outcomes = [(job, None, error or failed) for job, _, error in outcomes]
        except BaseException:  # cancelled: whether it committed is not known here
            self._knowledge.forget()
            raise
        else:  # before the gate opens: the reads it held up find what was committed
            self._knowledge.keep(staged, logged, KNOWN_ROWS)
        finally:
            if gate is not None:
                for job in early:
                    if self._unsettled.get(job.context_id) is gate:
                        del self._unsettled[job.context_id]
                gate.set()
        for job, result, error in outcomes:
            if job.future.done():
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    def _commits_inline(self, jobs: list[_Job]) -> bool:
        """Whether :meth:`_commit` runs this batch's COMMIT on the loop."""
        alone = len(jobs) == 1 and jobs[0].alone
        return alone and self._queue.empty() and not self._inline_pause

    async def _commit(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """``COMMIT``: in the writer thread, so the loop goes on serving requests
        (the next batch gathers) while the fsync waits for the disk; on the loop
        when this batch is one operation, no other waits, and its caller was the
        server's only request in progress (:meth:`use_alone_hint`): then the loop
        would only wait, and the hand-off to the thread and back is saved
        (measured on a proxied call, one connection: the commit as the loop sees
        it 1.06 -> 0.60 ms p50). Without the hint (the store used as a library)
        the commit always goes to the thread. SQLite's automatic checkpoint
        (every ~1,000 pages of WAL) runs inside a COMMIT, so now and then on the
        loop too. A disk slow to sync (a lone commit over ``INLINE_COMMIT_LIMIT``)
        sends the next ``INLINE_PAUSE`` lone commits to the thread too, so a slow
        disk cannot hold up the loop for long."""
        if self._commits_inline(jobs):
            started = time.perf_counter()
            conn.execute("COMMIT")
            if time.perf_counter() - started > INLINE_COMMIT_LIMIT:
                self._inline_pause = INLINE_PAUSE
            return
        if len(jobs) == 1 and jobs[0].alone and self._queue.empty() and self._inline_pause:
            self._inline_pause -= 1
        await self._in_writer(conn.execute, "COMMIT")

    def _answer_early(self, outcomes: list[tuple[_Job, Any, BaseException | None]]) -> list[_Job]:
        """Hand each ``reply_before_sync`` write that succeeded its result now,
        before the batch's COMMIT; returns those jobs. The COMMIT follows at
        once: in the writer thread while the callers answer their clients, or,
        for the server's only request in progress (see :meth:`_commit`), on the
        loop right after one loop step, the caller's, in which it answers its
        client. Until the COMMIT, any read in this process of such a write's
        context (the caller's next request, a stream catching up) waits for it
        (:meth:`_settled`); reads of other contexts do not. Another process
        reading the file may miss the write until then. A crash before the
        COMMIT completes loses the write, and a COMMIT that fails leaves the
        caller holding a version the next write takes (and the events it
        published describe it). A proxied call on one connection gained
        0.8-1.2 ms (medians of five A/B pairs) on a host where that COMMIT
        took 0.66-0.72 ms: docs/benchmarks.md."""
        early: list[_Job] = []
        for job, result, error in outcomes:
            if job.reply_before_sync and error is None and not job.future.done():
                job.future.set_result(result)
                early.append(job)
        return early

    async def _settled(self, context_id: str | None) -> None:
        """Wait for the COMMIT of the writes answered before it (see
        :meth:`_answer_early`): of ``context_id``, or of every context (None)."""
        if context_id is not None:
            gate = self._unsettled.get(context_id)
            if gate is not None:
                await gate.wait()
            return
        for gate in set(self._unsettled.values()):
            await gate.wait()

    async def _run_ops(
        self,
        conn: sqlite3.Connection,
        jobs: list[_Job],
        savepoints: bool,
        staged: dict[str, tuple[Any, ...]],
        logged: dict[str, list[tuple[Any, ...]]],
    ) -> list[tuple[_Job, Any, BaseException | None]] | None:
        """Run each job's operation in the open transaction.

        Without ``savepoints`` (the first attempt): an operation that fails
        before writing anything leaves nothing to undo; one that fails after
        writing (or on a SQLite error) makes this return None, and the batch is
        rolled back and run again with a SAVEPOINT around each operation, so
        the failed one is undone alone. Most batches fail nothing, and skip the
        two statements a savepoint costs each operation.
        """
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        for job in jobs:
            if job.future.done():  # the caller gave up before its turn
                continue
            tx = SQLiteTx(conn, job.context_id, self._knowledge, staged)
            if savepoints:
                conn.execute("SAVEPOINT op")
            try:
                result = await job.op(tx)
            except Exception as exc:
                if savepoints:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                elif tx.wrote or isinstance(exc, sqlite3.Error) or not conn.in_transaction:
                    return None  # (SQLite ends the transaction itself on some errors)
                failure: BaseException = exc
                if isinstance(exc, sqlite3.OperationalError):  # disk I/O, locked, full
                    failure = StoreUnavailable(f"SQLite write failed: {exc}")
                    failure.__cause__ = exc
                elif isinstance(exc, sqlite3.Error):
                    failure = StoreError(f"SQLite write failed: {exc}")
                    failure.__cause__ = exc
                outcomes.append((job, None, failure))
                continue
            if savepoints:
                conn.execute("RELEASE op")
            outcomes.append((job, result, None))
            if tx.row is not None:
                staged[job.context_id] = tx.row
            if tx.logged:
                logged.setdefault(job.context_id, []).extend(tx.logged)
        return outcomes

    # -- reads -----------------------------------------------------------

    def _known_row(self, conn: sqlite3.Connection, context_id: str) -> tuple[Any, ...] | None:
        """The context's row as this process committed it, when a read on
        ``conn`` may take it: on the idle write connection, with nothing
        written by another connection since (:class:`Known`)."""
        if conn is not self._write_conn:
            return None
        return self._knowledge.row(conn, context_id)

    async def get_context(self, context_id: str) -> ContextRecord | None:
        def read(conn: sqlite3.Connection) -> ContextRecord | None:
            known = self._known_row(conn, context_id)
            if known is not None:
                return self._knowledge.record(context_id, known)
            row = conn.execute(
                f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?", (context_id,)
            ).fetchone()
            return None if row is None else context_from_row(row)

        return await self._read(context_id, read)

    async def read_window(
        self, context_id: str, tail: int = 0
    ) -> tuple[ContextRecord | None, list[StoredMessage]]:
        def read(conn: sqlite3.Connection) -> tuple[ContextRecord | None, list[StoredMessage]]:
            row = known = self._known_row(conn, context_id)
            epoch = self._knowledge.epoch  # before the snapshot (a thread's read too)
            if row is None:
                row = conn.execute(
                    f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?", (context_id,)
                ).fetchone()
                if row is None:
                    return None, []
                ctx = context_from_row(row)
            else:
                ctx = self._knowledge.record(context_id, row)
            start, last, created = window_start(ctx, tail), ctx.last_seq, ctx.created_at
            if known is not None:  # the rows too, when the cache holds them to the last
                held = self._rows.serve(context_id, created, start, last, epoch)
                if held is not None:
                    return ctx, held
            # as PostgresStore's, whose fetch is awaited (sharing it costs every read a layer)

            def rows_of(plan: Plan) -> list[StoredMessage] | None:
                fetched: SizedRows = []
                if plan.fetches:
                    fetched = read_messages_sized(conn, context_id, plan.fetch_from, last)
                return self._rows.complete(plan, fetched)

            rows = rows_of(self._rows.plan(context_id, created, start, last, epoch))
            if rows is None:  # the rows held were not this log's
                rows = rows_of(RowCache.afresh(context_id, created, start, last, epoch))
            assert rows is not None  # a fresh read is never refused
            return ctx, rows

        return await self._read(context_id, read)

    async def list_contexts(
        self, limit: int, after: tuple[datetime, str] | None, tenant: str | None = None
    ) -> list[ContextRecord]:
        where: list[str] = []
        args: list[object] = []
        if tenant == "":
            where.append("instr(id, '/') = 0")
        elif tenant is not None:
            where.append("id >= ? AND id < ?")  # a range of the primary key
            args.extend(tenant_range(tenant))
        if after is not None:
            where.append("(updated_at, id) < (?, ?)")
            args.extend((format_time(after[0]), after[1]))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        sql = (
            f"SELECT {CONTEXT_COLUMNS} FROM contexts {clause}"
            "ORDER BY updated_at DESC, id DESC LIMIT ?"
        )

        def read(conn: sqlite3.Connection) -> list[ContextRecord]:
            rows = conn.execute(sql, (*args, limit)).fetchall()
            return [context_from_row(r) for r in rows]

        return await self._read(None, read)

    async def read_messages(
        self, context_id: str, from_seq: int, to_seq: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        return await self._read(
            context_id, lambda conn: read_messages(conn, context_id, from_seq, to_seq, max_bytes)
        )

    async def read_events(self, context_id: str, after_version: int, limit: int) -> list[Event]:
        def read(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT version, type, data FROM events WHERE context_id = ? AND version > ? "
                "ORDER BY version LIMIT ?",
                (context_id, after_version, limit),
            ).fetchall()
            return [Event(context_id, r[1], int(r[0]), loads(r[2])) for r in rows]

        return await self._read(context_id, read)

    async def list_summaries(
        self, context_id: str, limit: int, before_version: int | None
    ) -> list[SummaryRecord]:
        def read(conn: sqlite3.Connection) -> list[SummaryRecord]:
            rows = conn.execute(
                f"SELECT {SUMMARY_COLUMNS} FROM summaries WHERE context_id = ? AND version < ? "
                "ORDER BY version DESC LIMIT ?",
                (context_id, 2**63 - 1 if before_version is None else before_version, limit),
            ).fetchall()
            return [summary_from_row(r) for r in rows]

        return await self._read(context_id, read)
