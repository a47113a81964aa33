"""The fast paths keep the guarantees: Postgres known rows share nothing with
callers, ``format_time`` takes any datetime, SQLite reads on the loop pin no
snapshot, and a refused body cannot hold a connection."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from loopback import serve_app

from fastpaca_core import Engine, open_store
from fastpaca_core.errors import ContextTombstoned
from fastpaca_core.model import format_time
from fastpaca_core.stores.postgres import PostgresStore
from fastpaca_core.stores.sqlite import SQLiteStore

from .helpers import text

# -- Postgres known rows: shared objects --------------------------------------


async def test_caller_input_mutated_after_the_call_is_not_written_later(store_url: str) -> None:
    """A caller that reuses (mutates) its own metadata object after put_context
    returned must not change what a later, unrelated write stores. The memory
    store deep-copies, SQLite re-reads; the Postgres known row keeps the
    caller's nested objects and writes them back on the next append."""
    async with open_store(store_url) as store:
        engine = Engine(store)
        meta = {"tags": ["a"]}
        await engine.put_context("c", metadata=meta, policy={"strategy": "manual"})
        meta["tags"].append("leaked")  # the caller's own object, after the call
        await engine.append("c", text("user", "one"))  # writes the context row again
        assert (await engine.get_context("c")).metadata == {"tags": ["a"]}


async def test_mutating_a_returned_record_does_not_change_later_writes(store_url: str) -> None:
    """Same, through the ContextRecord put_context returns: its policy config
    (a dict inside the frozen PolicySpec) is the known row's own object."""
    async with open_store(store_url) as store:
        engine = Engine(store)
        ctx = await engine.put_context("c", policy={"strategy": "last_n", "config": {"limit": 50}})
        ctx.policy.config["limit"] = 1  # the caller scribbles on its copy
        await engine.append("c", text("user", "one"))
        await engine.append("c", text("user", "two"))
        stored = await engine.get_context("c")
        assert stored.policy.config["limit"] == 50
        assert len((await engine.window("c")).items) == 2


@pytest.mark.postgres
async def test_known_row_after_another_process_tombstones(pg_url: str) -> None:
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await a.open()
    await b.open()
    try:
        ea, eb = Engine(a), Engine(b)
        await ea.put_context("c", policy={"strategy": "manual"})
        await ea.append("c", text("user", "one"))
        assert "c" in a._known
        await eb.delete_context("c")
        with pytest.raises(ContextTombstoned):
            await ea.append("c", text("user", "two"))
        assert (await eb.get_context("c")).last_seq == 1
        # re-configured by another process: a's next write uses the new row
        await ea.put_context("d", policy={"strategy": "manual"}, metadata={"x": 1})
        await ea.append("d", text("user", "one"))
        await eb.update_metadata("d", {"y": 2})
        await ea.append("d", text("user", "two"))
        got = await eb.get_context("d")
        assert got.metadata == {"x": 1, "y": 2} and got.last_seq == 2 and got.version == 2
    finally:
        await a.close()
        await b.close()


# -- format_time ----------------------------------------------------------------


class _SubDatetime(datetime):
    """What freezegun's FakeDatetime, pendulum's DateTime, ... are."""


@pytest.mark.parametrize(
    "value",
    [
        _SubDatetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
        _SubDatetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_format_time_of_a_datetime_subclass(value: datetime) -> None:
    expected = value.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"
    assert format_time(value) == expected


async def test_engine_with_a_datetime_subclass_clock(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'f.db'}") as store:
        engine = Engine(store, clock=lambda: _SubDatetime.now(UTC).replace(microsecond=123))
        await engine.put_context("c")
        assert (await engine.append("c", text("user", "one"))).seqs == [1]


def test_format_time_edge_values() -> None:
    zone = timezone(timedelta(hours=-3, minutes=-30))
    cases = {
        datetime(1, 1, 1, tzinfo=UTC): "0001-01-01T00:00:00.000000Z",
        datetime(999, 2, 3, 4, 5, 6, 7, tzinfo=UTC): "0999-02-03T04:05:06.000007Z",
        datetime(2024, 1, 1, 20, 30, 0, 1, tzinfo=zone): "2024-01-02T00:00:00.000001Z",
        datetime(2024, 1, 1, 20, 30, 0, 0, tzinfo=zone): "2024-01-02T00:00:00.000000Z",
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC): "9999-12-31T23:59:59.999999Z",
    }
    for value, expected in cases.items():
        assert format_time(value) == expected


# -- SQLite reads on the loop -------------------------------------------------------


async def test_loop_reads_leave_no_snapshot_open(tmp_path: Path) -> None:
    """After reads on the loop (on the writer's connection, idle between
    batches), a TRUNCATE checkpoint from another connection is not blocked:
    no statement was left un-reset."""
    path = tmp_path / "f.db"
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    try:
        engine = Engine(store)
        for name in ("a", "b", "c"):
            await engine.put_context(name, policy={"strategy": "manual"})
            for i in range(3):
                await engine.append(name, text("user", f"{name}{i}"))
        await store.get_context("a")
        await store.read_window("a")
        await store.list_contexts(1, None)
        await store.read_messages("a", 1, 1)
        await store.read_events("a", 0, 1)
        await store.ping()
        assert store._loop_conn is None  # the writer was idle: its connection read
        assert store._write_conn is not None and not store._write_conn.in_transaction
        other = sqlite3.connect(path, isolation_level=None)
        try:
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            other.close()
        assert busy == 0
    finally:
        await store.close()


# -- the 413 path ---------------------------------------------------------------------


async def test_refused_body_client_cannot_hold_the_connection(tmp_path: Path) -> None:
    """A client that declared a too-large body (<= 64 MiB), sends part of it and
    then stalls with its socket open: it reads the whole 413, then the server's
    FIN, and nothing after it; the server drops the connection within aiohttp's
    lingering time (10 s), not never."""

    from fastpaca_core.http.app import create_app
    from fastpaca_core.settings import Settings

    app = create_app(Settings(store="memory://", max_body_bytes=2048, body_timeout=30.0))
    runner, port = await serve_app(app)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/contexts/c/messages HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n" + b" " * 4096
        )
        await writer.drain()
        start = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 5)  # up to the server's FIN
        assert answer.startswith(b"HTTP/1.1 413") and answer.endswith(b"}")
        assert b"payload_too_large" in answer
        # the client keeps its side open and sends nothing: the server must close
        closed = asyncio.get_running_loop().create_future()

        async def watch() -> None:
            while True:
                try:
                    writer.write(b" " * 1024)
                    await writer.drain()
                except (ConnectionError, OSError):
                    closed.set_result(time.monotonic() - start)
                    return
                await asyncio.sleep(0.5)

        task = asyncio.create_task(watch())
        try:
            held = await asyncio.wait_for(closed, 15)
        finally:
            task.cancel()
        assert held < 12
        writer.close()
    finally:
        await runner.cleanup()
