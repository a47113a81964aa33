"""SQLite specifics: durability settings, group commit, isolation of failing operations."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from fastpaca_core import Engine, StoreUnavailable, ValidationError, VersionConflict, open_store
from fastpaca_core.stores.sqlite import SQLiteStore

from .helpers import call, result, text


async def test_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    async with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SQLiteStore)
        conn = store._write_conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 2


async def test_group_commit_isolates_a_failing_operation(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'g.db'}") as store:
        engine = Engine(store)
        for name in ("a", "b", "c"):
            await engine.put_context(name)
        await engine.append("b", text("user", "first"))
        commits = 0
        original = store._in_writer  # type: ignore[attr-defined]

        async def counting(fn, *args):  # type: ignore[no-untyped-def]
            nonlocal commits
            if args == ("COMMIT",):
                commits += 1
            return await original(fn, *args)

        store._in_writer = counting  # type: ignore[attr-defined]
        outcomes = await asyncio.gather(
            *(engine.append("a", text("user", f"a{i}")) for i in range(20)),
            engine.append("b", text("user", "stale"), if_version=0),  # conflicts
            *(engine.append("c", text("user", f"c{i}")) for i in range(20)),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], VersionConflict)
        assert commits < 41  # appends shared commits
        assert (await engine.get_context("a")).last_seq == 20
        assert (await engine.get_context("b")).last_seq == 1
        assert (await engine.get_context("c")).last_seq == 20
    async with open_store(f"sqlite:///{tmp_path / 'g.db'}") as store:
        engine = Engine(store)
        assert [m.seq for m in await engine.messages("a", limit=50)] == list(range(1, 21))


async def test_missing_directory_is_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")
    with pytest.raises(StoreUnavailable):
        await store.open()


def test_bad_urls() -> None:
    with pytest.raises(ValidationError):
        open_store("sqlite://")
    with pytest.raises(ValidationError):
        open_store("mysql://x")


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await Engine(store).put_context("x")
    with pytest.raises(StoreUnavailable):
        await store.get_context("x")


async def test_reads_run_on_the_loop_and_wait_for_a_lock_in_a_thread(tmp_path: Path) -> None:
    """A read runs on the event loop's own connection, which never waits; one that
    meets a lock is retried in a reader thread, which waits for it while the loop
    goes on serving."""
    path = tmp_path / "r.db"
    async with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SQLiteStore)
        engine = Engine(store)
        await engine.put_context("c")
        await engine.append("c", text("user", "hello"))
        threads: list[str] = []

        def where(conn: sqlite3.Connection) -> int:
            threads.append(threading.current_thread().name)
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])

        assert await store._read(None, where) == 1
        assert threads == [threading.current_thread().name]  # no hand-off
        assert (await engine.window("c")).messages[0].parts[0]["text"] == "hello"

        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock
        threads.clear()

        def locked(conn: sqlite3.Connection) -> str:
            threads.append(threading.current_thread().name)
            conn.execute("PRAGMA query_only = OFF")  # a statement that needs the lock
            try:
                conn.execute("BEGIN IMMEDIATE")  # busy at once on the loop's connection
                conn.execute("ROLLBACK")
            finally:
                conn.execute("PRAGMA query_only = ON")
            return "got it"

        read = asyncio.ensure_future(store._read(None, locked))
        ticks = 0
        while ticks < 20:  # the loop is free while the read waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not read.done()
        holder.execute("ROLLBACK")
        holder.close()
        assert await asyncio.wait_for(read, 5) == "got it"
        assert threads[0] == threading.current_thread().name
        assert threads[1].startswith("fastpaca-sqlite-reader")


async def test_a_write_waits_for_another_process_lock_off_the_loop(tmp_path: Path) -> None:
    """BEGIN runs on the loop when the write lock is free; when another connection
    holds it, the batch waits for it in the writer thread while the loop goes on."""
    path = tmp_path / "w.db"
    async with open_store(f"sqlite:///{path}") as store:
        engine = Engine(store)
        await engine.put_context("c")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(engine.append("c", text("user", "waited")))
        for _ in range(20):  # the loop is free while the write waits
            await asyncio.sleep(0.01)
        assert not write.done()
        holder.execute("ROLLBACK")
        holder.close()
        result = await asyncio.wait_for(write, 5)
        assert result.seqs == [1]
        result = await engine.append("c", text("user", "at once"))  # the lock is free again
        assert result.seqs == [2]


async def test_an_operation_failing_after_its_writes_is_undone_alone(tmp_path: Path) -> None:
    """Operations share a transaction without a SAVEPOINT each; one that fails
    after writing (here: a rewind that would split a tool call from its result,
    refused after the batch's rows went in) makes the batch run again with
    savepoints, so it is undone alone and the others are stored once."""
    async with open_store(f"sqlite:///{tmp_path / 'u.db'}") as store:
        assert isinstance(store, SQLiteStore) and store._write_conn is not None
        engine = Engine(store)
        for name in ("a", "b", "c"):
            await engine.put_context(name)
        await engine.append("b", call("k1"))
        await engine.append("b", result("k1"))
        statements: list[str] = []
        store._write_conn.set_trace_callback(statements.append)
        outcomes = await asyncio.gather(
            *(engine.append("a", text("user", f"a{i}")) for i in range(10)),
            engine.append_batch("b", [text("user", "again")], rewind_to_seq=2),
            *(engine.append("c", text("user", f"c{i}")) for i in range(10)),
            return_exceptions=True,
        )
        store._write_conn.set_trace_callback(None)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], ValidationError), errors
        assert "ROLLBACK TO op" in statements  # the second run undid it alone
        for name, count in (("a", 10), ("b", 2), ("c", 10)):
            assert (await engine.get_context(name)).last_seq == count
        assert [m.seq for m in await engine.messages("a", limit=50)] == list(range(1, 11))
        assert [m.seq for m in await engine.messages("b", limit=50)] == [1, 2]
        # a batch in which nothing fails takes no savepoints
        statements.clear()
        store._write_conn.set_trace_callback(statements.append)
        await asyncio.gather(*(engine.append("c", text("user", f"d{i}")) for i in range(10)))
        store._write_conn.set_trace_callback(None)
        assert "COMMIT" in statements and "SAVEPOINT op" not in statements
        assert (await engine.get_context("c")).last_seq == 20


async def test_the_writer_rereads_a_context_another_connection_changed(tmp_path: Path) -> None:
    """The writer keeps the context rows it last committed and does not read
    them again; a write by another connection (another process, a tool) makes
    it forget them (``PRAGMA data_version``), so that write is not undone."""
    path = tmp_path / "k.db"
    async with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SQLiteStore)
        engine = Engine(store)
        await engine.put_context("c", policy={"strategy": "manual"})
        await engine.append("c", text("user", "one"))
        assert "c" in store._knowledge.rows
        with sqlite3.connect(path, isolation_level=None) as other:
            other.execute("UPDATE contexts SET token_budget = 1234 WHERE id = 'c'")
        other.close()
        result = await engine.append("c", text("user", "two"))
        assert result.seqs == [2]
        ctx = await engine.get_context("c")
        assert (ctx.token_budget, ctx.last_seq) == (1234, 2)
        # and with nobody else writing, the known row is used and kept current
        await engine.append("c", text("user", "three"))
        ctx = await engine.get_context("c")
        assert (ctx.token_budget, ctx.last_seq, ctx.version) == (1234, 3, 3)


async def test_a_transaction_sqlite_ended_itself_is_not_carried_on(tmp_path: Path) -> None:
    """SQLite ends the whole transaction on some errors (SQLITE_NOMEM, which
    Python raises as MemoryError, not sqlite3.Error). An operation that fails
    so, before writing anything, must not leave the rest of the batch running
    outside a transaction (each statement committing by itself): the batch runs
    again, and nothing is stored twice or half."""
    async with open_store(f"sqlite:///{tmp_path / 'n.db'}") as store:
        engine = Engine(store)
        for name in ("a", "b"):
            await engine.put_context(name)
        await engine.append("b", call("k1"))
        await engine.append("b", result("k1"))
        hits: list[int] = []

        async def out_of_memory(tx: Any) -> None:
            hits.append(1)
            if len(hits) == 1:
                tx._conn.execute("ROLLBACK")  # what SQLite may do on SQLITE_NOMEM
                raise MemoryError

        outcomes = await asyncio.gather(
            store.run("a", out_of_memory),
            engine.append("a", text("user", "once")),
            engine.append_batch("b", [text("user", "again")], rewind_to_seq=2),
            return_exceptions=True,
        )
        assert isinstance(outcomes[2], ValidationError), outcomes
        texts = [m.parts[0]["text"] for m in await engine.messages("a", limit=10)]
        assert texts == ["once"]
        assert [m.seq for m in await engine.messages("b", limit=10)] == [1, 2]
        assert (await engine.append("b", text("user", "later"))).seqs == [3]


async def test_a_lone_commit_runs_on_the_loop_only_when_the_server_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``use_alone_hint``: a batch of one operation, with no other waiting, whose
    caller the server calls alone, commits on the loop (no hand-off to the writer
    thread); anything else commits in the thread. Either way the append is
    committed when it returns: another connection reads it. A lone commit slower
    than ``INLINE_COMMIT_LIMIT`` sends the next ``INLINE_PAUSE`` to the thread."""
    path = tmp_path / "lone.db"
    # a COMMIT slowed by a busy machine must not pause the loop's commits early
    monkeypatch.setattr("fastpaca_core.stores.sqlite.INLINE_COMMIT_LIMIT", 3600.0)
    async with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SQLiteStore)
        engine = Engine(store)
        for name in ("a", "b", "c"):
            await engine.put_context(name)
        in_thread = 0
        original = store._in_writer

        async def counting(fn, *args):  # type: ignore[no-untyped-def]
            nonlocal in_thread
            if args == ("COMMIT",):
                in_thread += 1
            return await original(fn, *args)

        store._in_writer = counting  # type: ignore[method-assign]

        def stored(context_id: str) -> int:
            with sqlite3.connect(path) as other:
                row = other.execute(
                    "SELECT count(*) FROM messages WHERE context_id = ?", (context_id,)
                ).fetchone()
            return int(row[0])

        await engine.append("a", text("user", "no hint given"))  # a library's store
        assert (in_thread, stored("a")) == (1, 1)

        alone = True
        store.use_alone_hint(lambda: alone)
        await engine.append("a", text("user", "alone"))
        assert (in_thread, stored("a")) == (1, 2)  # committed on the loop, and durable

        alone = False
        await engine.append("a", text("user", "another request is in progress"))
        assert (in_thread, stored("a")) == (2, 3)

        alone = True
        await asyncio.gather(*(engine.append(c, text("user", c)) for c in ("b", "c")))
        assert in_thread == 3  # one batch of two: the thread
        assert (stored("b"), stored("c")) == (1, 1)

        monkeypatch.setattr("fastpaca_core.stores.sqlite.INLINE_COMMIT_LIMIT", -1.0)
        monkeypatch.setattr("fastpaca_core.stores.sqlite.INLINE_PAUSE", 2)
        for n in range(4):
            await engine.append("b", text("user", f"slow disk {n}"))
        # on the loop (too slow), then two in the thread, then the loop again
        assert (in_thread, stored("b")) == (5, 5)
    async with open_store(f"sqlite:///{path}") as store:
        assert (await Engine(store).get_context("a")).last_seq == 3


async def test_a_write_may_be_answered_before_its_commit_yet_every_read_finds_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``reply_before_sync`` (the proxy's turn): the result comes before the
    COMMIT, which follows at once: in the writer thread, or, for the server's
    only request in progress, on the loop after one step of it. Until then a
    read of that context in this process (the caller's own, its next request)
    waits for the COMMIT; a read of another context does not. Without
    ``reply_before_sync`` the result comes after the COMMIT as always. A
    COMMIT that fails after the answer is logged and leaves nothing behind;
    its version goes to the next write (documented)."""
    path = tmp_path / "early.db"
    limit = "fastpaca_core.stores.sqlite.INLINE_COMMIT_LIMIT"
    monkeypatch.setattr(limit, 3600.0)  # a COMMIT slowed by a busy machine pauses nothing
    async with open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SQLiteStore)
        engine = Engine(store)
        await engine.put_context("a")
        await engine.put_context("b")
        released = threading.Event()
        released.set()
        thread_commits = 0
        original = store._in_writer

        async def held(fn, *args):  # type: ignore[no-untyped-def]
            """The writer thread's COMMIT waits while ``released`` is clear."""
            nonlocal thread_commits
            if args != ("COMMIT",):
                return await original(fn, *args)
            thread_commits += 1

            def commit(*inner: Any) -> Any:
                assert released.wait(10)
                return fn(*inner)

            return await original(commit, *args)

        store._in_writer = held  # type: ignore[method-assign]

        def stored() -> int:
            with sqlite3.connect(path) as other:
                row = other.execute("SELECT count(*) FROM messages WHERE context_id = 'a'")
                return int(row.fetchone()[0])

        released.clear()
        result = await engine.append_batch("a", [text("user", "early")], reply_before_sync=True)
        assert (result.seqs, stored(), thread_commits) == ([1], 0, 1)  # COMMIT still held
        reading = asyncio.ensure_future(engine.messages("a", limit=10))
        assert await engine.messages("b") == []  # another context's read does not wait
        await asyncio.sleep(0.05)
        assert not reading.done()  # this context's read waits for the COMMIT
        released.set()
        assert [m.seq for m in await reading] == [1]
        assert stored() == 1

        await engine.append_batch("a", [text("user", "durable")])
        assert stored() == 2  # not asked for: committed when it returns

        alone = True
        store.use_alone_hint(lambda: alone)
        result = await engine.append_batch("a", [text("user", "alone")], reply_before_sync=True)
        assert result.seqs == [3]
        assert (stored(), thread_commits) == (2, 2)  # its COMMIT follows, on the loop
        messages = await engine.messages("a", limit=10)  # the caller's own read waits
        assert [m.seq for m in messages] == [1, 2, 3]
        assert stored() == 3

        await engine.append_batch("a", [text("user", "alone")], reply_before_sync=True)
        await asyncio.sleep(0)  # one step: the COMMIT is done
        assert (stored(), thread_commits) == (4, 2)

        alone = False
        released.clear()
        await engine.append_batch("a", [text("user", "crowded")], reply_before_sync=True)
        assert (stored(), thread_commits) == (4, 3)  # other requests: the thread commits
        released.set()
        assert len(await engine.messages("a", limit=10)) == 5

        alone = True
        monkeypatch.setattr(limit, -1.0)
        monkeypatch.setattr("fastpaca_core.stores.sqlite.INLINE_PAUSE", 1)
        await engine.append_batch("a", [text("user", "slow")], reply_before_sync=True)
        assert stored() == 5  # answered early; its COMMIT follows on the loop ...
        assert len(await engine.messages("a", limit=10)) == 6  # (waits for it)
        assert (thread_commits, store._inline_pause) == (3, 1)  # ... and was "slow"
        await engine.append_batch("a", [text("user", "paused")], reply_before_sync=True)
        assert len(await engine.messages("a", limit=10)) == 7
        assert (stored(), thread_commits, store._inline_pause) == (7, 4, 0)  # the thread
        monkeypatch.setattr(limit, 3600.0)

        real = store._write_conn
        assert real is not None

        class FailingCommit:
            """The writer's connection, but its next COMMIT fails (a full disk)."""

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def execute(self, sql: str, *args: Any) -> Any:
                if sql == "COMMIT":  # the transaction stays open: the store rolls back
                    store._write_conn = real
                    raise sqlite3.OperationalError("database or disk is full")
                return real.execute(sql, *args)

        store._write_conn = FailingCommit()  # type: ignore[assignment]
        with caplog.at_level("ERROR", logger="fastpaca.store"):
            lost = await engine.append_batch("a", [text("user", "lost")], reply_before_sync=True)
            assert lost.seqs == [8]
            assert [m.seq for m in await engine.messages("a", limit=10)] == list(range(1, 8))
        assert "answered before its commit was lost" in caplog.text
        assert stored() == 7
        # the lost write left no trace, and its version goes to the next write
        again = await engine.append_batch("a", [text("user", "after")], reply_before_sync=True)
        assert (again.seqs, again.version) == ([8], lost.version)
        texts = [m.parts[0]["text"] for m in await engine.messages("a", limit=10)]
        assert texts[-1] == "after"
    async with open_store(f"sqlite:///{path}") as store:
        assert (await Engine(store).get_context("a")).last_seq == 8
