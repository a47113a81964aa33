"""Reads the SQLite writer serves from what it committed (``_sqlitetx.Known``
and the row cache's epochs): the context row it last committed and the log
rows it just wrote, taken without reading the file while no other connection
wrote to it; whatever another connection (another process, a tool) commits
in between is read from the file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fastpaca_core import Engine
from fastpaca_core.model import ContextRecord, StoredMessage
from fastpaca_core.stores import open_store
from fastpaca_core.stores._codec import CONTEXT_COLUMNS, context_from_row
from fastpaca_core.stores._sqlitetx import SQLiteTx, read_messages
from fastpaca_core.stores.sqlite import SQLiteStore

from .helpers import call, result, text


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'known.db'}")
    assert isinstance(opened, SQLiteStore)
    async with opened:
        yield opened


def _on_disk(store: SQLiteStore, cid: str) -> tuple[ContextRecord, list[StoredMessage]]:
    """The context and its whole log as another connection reads them."""
    with sqlite3.connect(store.path) as conn:
        sql = f"SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = ?"
        ctx = context_from_row(conn.execute(sql, (cid,)).fetchone())
        rows = read_messages(conn, cid, 1, ctx.last_seq)
    conn.close()
    return ctx, rows


class _Statements:
    """The statements the writer's connection runs."""

    def __init__(self, store: SQLiteStore) -> None:
        self.conn = store._write_conn
        assert self.conn is not None
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        assert self.conn is not None
        self.conn.set_trace_callback(self.seen.append)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        assert self.conn is not None
        self.conn.set_trace_callback(None)


def _reads_nothing(statements: list[str]) -> bool:
    return statements == ["PRAGMA data_version"]


VARIED: list[dict[str, Any]] = [
    text(
        "user",
        "grüße, 你好, emoji 🎉 and a \u2028 line separator",
        metadata={"k": [1, {"x": None}]},
    ),
    call("c1"),
    result("c1", metadata={"source": "tool", "nested": {"deep": [True, 1.5, "ü"]}}),
    text("assistant", "", token_count=0),
    text("assistant", "counted by the client " * 40, token_count=123),
    {"role": "system", "parts": [{"type": "text", "text": "a"}, {"type": "file", "url": "x"}]},
]


async def test_a_read_after_an_append_takes_the_rows_the_append_wrote(store: SQLiteStore) -> None:
    """After a read (which fills the row cache) and an append, the next read
    of the context runs no statement but ``PRAGMA data_version``, and returns
    exactly what a fresh read of the file returns, field by field, for
    messages of every shape (tool calls, metadata, unicode, token counts)."""
    engine = Engine(store)
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append("c", text("user", "first"))
    await store.read_window("c")  # the cache holds the log from here
    for i, message in enumerate(VARIED):
        await engine.append_batch("c", [message, text("assistant", f"reply {i}")])
        with _Statements(store) as statements:
            ctx, rows = await store.read_window("c")
        assert _reads_nothing(statements), statements
        disk_ctx, disk_rows = _on_disk(store, "c")
        assert ctx == disk_ctx
        assert len(rows) == len(disk_rows) == ctx.last_seq
        for got, want in zip(rows, disk_rows, strict=True):
            for field in StoredMessage.__slots__:
                assert getattr(got, field) == getattr(want, field), (field, got.seq)
                assert type(getattr(got, field)) is type(getattr(want, field)), field
        with _Statements(store) as statements:
            assert await store.get_context("c") == disk_ctx
        assert _reads_nothing(statements), statements
        with _Statements(store) as statements:  # a tail wider than the live range
            ctx, tail = await store.read_window("c", tail=3)
        assert _reads_nothing(statements) and tail == rows


async def test_rows_taken_from_an_append_share_nothing_with_the_caller(
    store: SQLiteStore,
) -> None:
    """A caller changing the message it appended (its dicts) changes nothing read."""
    engine = Engine(store)
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append("c", text("user", "first"))
    await store.read_window("c")
    message = call("c9", metadata={"tags": ["a"]})
    await engine.append("c", message)
    message["parts"][0]["input"]["city"] = "changed"
    message["metadata"]["tags"].append("b")
    _, rows = await store.read_window("c")
    assert rows[-1].parts[0]["input"] == {"city": "Oslo"}
    assert rows[-1].metadata == {"tags": ["a"]}
    rows[-1].parts[0]["input"]["city"] = "a reader's change"  # (rows are shared: not done)
    assert _on_disk(store, "c")[1][-1].parts[0]["input"] == {"city": "Oslo"}


async def test_another_connection_writing_between_an_append_and_a_read_is_read(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """Another store on the file (another process) appends, or a tool rewrites
    the log's newest rows (a restore that was written on), between this
    store's append and its read: the read returns what the file holds."""
    engine = Engine(store)
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append("c", text("user", "one"))
    await store.read_window("c")
    await engine.append("c", text("user", "two"))  # known, and its row cached
    async with open_store(store.url) as second:
        await Engine(second).append("c", text("assistant", "from the other store"))
    ctx, rows = await store.read_window("c")
    assert (ctx, rows) == _on_disk(store, "c")
    assert [r.parts[0]["text"] for r in rows] == ["one", "two", "from the other store"]
    assert await store.get_context("c") == ctx

    await engine.append("c", text("user", "four"))  # known again, cached again
    with _Statements(store) as statements:
        assert (await store.read_window("c"))[1][-1].parts[0]["text"] == "four"
    assert _reads_nothing(statements)
    with sqlite3.connect(store.path, isolation_level=None) as tool:
        tool.execute(
            "UPDATE messages SET parts = ? WHERE context_id = 'c' AND seq = 4",
            ('[{"type":"text","text":"rewritten"}]',),
        )
        tool.execute("UPDATE contexts SET token_budget = 4321 WHERE id = 'c'")
    tool.close()
    ctx, rows = await store.read_window("c")
    assert (ctx, rows) == _on_disk(store, "c")
    assert (ctx.token_budget, rows[-1].parts[0]["text"]) == (4321, "rewritten")
    # a rewrite the writer finds at its next append (not at a read): the rows
    # the cache held before it are not extended by the append, nor served
    with sqlite3.connect(store.path, isolation_level=None) as tool:
        tool.execute(
            "UPDATE messages SET parts = ? WHERE context_id = 'c' AND seq = 4",
            ('[{"type":"text","text":"rewritten again"}]',),
        )
    tool.close()
    await engine.append("c", text("user", "five"))
    ctx, rows = await store.read_window("c")
    assert (ctx, rows) == _on_disk(store, "c")
    assert [r.parts[0]["text"] for r in rows][-2:] == ["rewritten again", "five"]
    # and the writer, having seen the change, serves reads again after its next append
    await engine.append("c", text("user", "six"))
    with _Statements(store) as statements:
        ctx, rows = await store.read_window("c")
    assert _reads_nothing(statements)
    assert (ctx, rows) == _on_disk(store, "c")


async def test_get_context_after_another_connection_changed_the_row(store: SQLiteStore) -> None:
    engine = Engine(store)
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append("c", text("user", "one"))
    with _Statements(store) as statements:
        assert (await store.get_context("c")).token_budget != 999  # type: ignore[union-attr]
    assert _reads_nothing(statements)
    with sqlite3.connect(store.path, isolation_level=None) as tool:
        tool.execute("UPDATE contexts SET token_budget = 999 WHERE id = 'c'")
    tool.close()
    assert (await store.get_context("c")).token_budget == 999  # type: ignore[union-attr]


async def test_rows_of_a_failed_operation_or_commit_are_never_served(store: SQLiteStore) -> None:
    """An operation that fails after inserting rows (undone alone, its batch
    run again with savepoints), and a COMMIT that fails: nothing they wrote
    is served to a later read."""
    engine = Engine(store)
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append("c", text("user", "one"))
    await store.read_window("c")

    async def failing(tx: Any) -> None:
        assert isinstance(tx, SQLiteTx)
        ctx = await tx.load_context()
        assert ctx is not None
        ctx.last_seq += 1
        ctx.version += 1
        row = StoredMessage(
            ctx.last_seq,
            "user",
            [{"type": "text", "text": "undone"}],
            {},
            1,
            ctx.total_tokens + 1,
            ctx.version,
            ctx.updated_at,
        )
        await tx.insert_messages([row])
        await tx.save_context(ctx, created=False)
        raise RuntimeError("after writing")

    good = engine.append("c", text("user", "two"))
    bad = store.run("c", failing)
    outcomes = await asyncio.gather(good, bad, return_exceptions=True)
    assert isinstance(outcomes[1], RuntimeError)
    ctx, rows = await store.read_window("c")
    assert (ctx, rows) == _on_disk(store, "c")
    assert [r.parts[0]["text"] for r in rows] == ["one", "two"]

    real = store._write_conn
    assert real is not None

    class FailingCommit:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql == "COMMIT":
                store._write_conn = real
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

    store._write_conn = FailingCommit()  # type: ignore[assignment]
    with pytest.raises(Exception, match="disk is full"):
        await engine.append("c", text("user", "lost"))
    ctx, rows = await store.read_window("c")
    assert (ctx, rows) == _on_disk(store, "c")
    assert [r.parts[0]["text"] for r in rows] == ["one", "two"]
    await engine.append("c", text("user", "three"))
    ctx, rows = await store.read_window("c")
    assert (ctx, rows) == _on_disk(store, "c")
    assert [r.parts[0]["text"] for r in rows] == ["one", "two", "three"]


async def test_a_known_row_is_decoded_once_and_each_caller_gets_its_own_record(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy's turn: a read, then an append that loads the row the read
    decoded. The known row is decoded once per commit; each read and each
    operation gets a copy whose changes (an operation moving its counters
    on, a caller editing metadata or the prefix) reach no other."""
    engine = Engine(store)
    await engine.put_context("c", policy={"strategy": "manual"}, metadata={"a": {"b": [1]}})
    await engine.append("c", text("user", "one"))
    await store.read_window("c")
    decoded: list[str] = []
    real = context_from_row

    def counted(row: Any) -> ContextRecord:
        decoded.append(row[0])
        return real(row)

    monkeypatch.setattr("fastpaca_core.stores._sqlitetx.context_from_row", counted)
    for i in range(3):
        ctx, _ = await store.read_window("c")
        await engine.append("c", text("user", f"turn {i}"))
    # once per commit (the first read's row was decoded by the read before):
    # each append's load took a copy of what the read before it decoded
    assert decoded == ["c"] * 2

    first = await store.get_context("c")
    assert first is not None
    first.metadata["a"]["b"].append(2)
    first.metadata["new"] = True
    first.prefix.append(first.prefix[0] if first.prefix else None)  # type: ignore[arg-type]
    first.last_seq += 10
    first.policy.config["limit"] = 1
    second = await store.get_context("c")
    assert second is not None and second is not first
    assert second == _on_disk(store, "c")[0]
    assert second.metadata == {"a": {"b": [1]}} and second.prefix == []
    assert second.policy.config == {}

    async def mutating(tx: Any) -> None:  # changes its record, then fails: nothing kept
        ctx = await tx.load_context()
        ctx.version += 5
        ctx.metadata["a"]["b"].append(3)
        raise RuntimeError("before writing")

    with pytest.raises(RuntimeError):
        await store.run("c", mutating)
    result = await engine.append("c", text("user", "after"))
    disk = _on_disk(store, "c")[0]
    assert result.version == disk.version == second.version + 1
    assert disk.metadata == {"a": {"b": [1]}}
    assert await store.get_context("c") == disk


async def test_a_writer_cancelled_in_its_commit_forgets_what_it_knew(store: SQLiteStore) -> None:
    """The writer task cancelled while committing a write it answered early
    (the loop shutting down): it cannot tell whether the COMMIT took, and
    keeps no context row it would take for the one committed."""
    engine = Engine(store)
    store.use_alone_hint(lambda: True)  # the COMMIT follows the caller's step, on the loop
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append("c", text("user", "one"))
    assert "c" in store._knowledge.rows
    await engine.append_batch("c", [text("user", "two")], reply_before_sync=True)
    writer = store._writer
    assert writer is not None and not writer.done()  # its COMMIT is the next step
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    disk = _on_disk(store, "c")[0]
    assert disk.last_seq == 2  # committed all the same
    known = store._knowledge.rows.get("c")
    assert known is None or context_from_row(known) == disk
    store._writer = asyncio.create_task(store._write_loop())  # for close()
    assert (await store.read_window("c"))[0] == disk


def test_a_known_records_copy_carries_every_field() -> None:
    """``Known.record`` copies a decoded record field by field: a field added to
    ``ContextRecord`` later (with its column) must be copied too. Every field
    is set away from its default here, so a copy that drops one differs."""
    from dataclasses import fields
    from datetime import UTC, datetime

    from fastpaca_core.model import Message, PolicySpec, PrefixEntry, format_time
    from fastpaca_core.stores._codec import context_values
    from fastpaca_core.stores._rowcache import RowCache
    from fastpaca_core.stores._sqlitetx import Known

    created = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    summary = Message("system", [{"type": "text", "text": "so far"}], {"k": 1}, 3)
    ctx = ContextRecord(
        "c-1",
        1234,
        0.5,
        PolicySpec("last_n", {"limit": 7}),
        {"owner": "x"},
        "active",
        42,
        40,
        900,
        [PrefixEntry(summary, "summary", 1, 30)],
        31,
        700,
        created,
        datetime(2026, 2, 3, 4, 5, 6, 700000, tzinfo=UTC),
        1.25,
        9,
    )
    for f in fields(ContextRecord):  # a field added later must be set here too
        assert getattr(ctx, f.name) != f.default, f"set {f.name} away from its default"
    row = tuple(format_time(v) if isinstance(v, datetime) else v for v in context_values(ctx))
    expected = context_from_row(row)
    known = Known(RowCache())
    known.rows["c-1"] = row
    for _ in range(2):  # decoded, then copied from what was decoded
        copy = known.record("c-1", row)
        for f in fields(ContextRecord):
            assert getattr(copy, f.name) == getattr(expected, f.name), f.name
