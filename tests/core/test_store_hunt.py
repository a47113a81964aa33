"""Store defects found by a hunt, each pinned by a test that failed before its fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from fastpaca_core import Engine, ValidationError, open_store
from fastpaca_core.errors import StoreUnavailable
from fastpaca_core.stores.postgres import PostgresStore

HANG = 30.0  # seconds after which a call that should answer is taken as hung


def text(value: str) -> dict[str, object]:
    return {"role": "user", "parts": [{"type": "text", "text": value}]}


class Relay:
    """A TCP relay to the PostgreSQL server: :meth:`cut` closes its port and
    every connection through it (the server seems down: connecting is
    refused), :meth:`restore` listens on the same port again."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.fixture
async def relay(pg_url: str) -> AsyncIterator[Relay]:
    parts = urlsplit(pg_url)
    r = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    await r.restore()
    try:
        yield r
    finally:
        if r._server is not None:
            await r.cut()


def through(pg_url: str, relay: Relay) -> str:
    """``pg_url`` (its schema too) reached through ``relay``."""
    parts = urlsplit(pg_url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{relay.port}"))


@pytest.mark.postgres
async def test_appends_answer_503_while_postgres_is_down_and_work_once_it_is_back(
    pg_url: str, relay: Relay
) -> None:
    """An append on a context this process wrote last skips the read and takes a
    lane of the group writer before it connects. Connecting failed during the
    outage, and the lane was never given back: after two such failures every
    such append waited for a lane forever, during the outage (instead of 503)
    and after it."""
    store = PostgresStore(through(pg_url, relay), timeout=2)
    await store.open()
    try:
        engine = Engine(store)
        await engine.put_context("c", policy={"strategy": "manual"})
        await engine.append("c", text("before"))  # the store now knows the row
        await relay.cut()
        for attempt in range(4):
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(engine.append("c", text(f"down {attempt}")), HANG)
        await relay.restore()
        result = await asyncio.wait_for(engine.append("c", text("after")), HANG)
        assert result.seqs == [2]
        texts = [m.parts[0]["text"] for m in await engine.messages("c")]
        assert texts == ["before", "after"]
    finally:
        await asyncio.wait_for(store.close(), HANG)


@pytest.mark.postgres
async def test_appends_cancelled_while_waiting_for_a_connection_leave_no_lane_taken(
    pg_url: str,
) -> None:
    """The same lane, lost when the caller was cancelled (a request deadline, a
    client gone) while it waited for a pooled connection."""
    store = PostgresStore(pg_url, min_size=1, max_size=1)
    await store.open()
    try:
        engine = Engine(store)
        await engine.put_context("c", policy={"strategy": "manual"})
        await engine.append("c", text("before"))
        assert store._pool is not None
        held = await store._pool.acquire()  # every pooled connection is in use
        try:
            for attempt in range(2):
                lanes = store._group._busy
                waiting = asyncio.create_task(engine.append("c", text(f"gave up {attempt}")))
                while store._group._busy == lanes:  # it took a lane and waits for a connection
                    await asyncio.sleep(0.01)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
        finally:
            await store._pool.release(held)
        result = await asyncio.wait_for(engine.append("c", text("after")), HANG)
        assert result.seqs == [2]
        texts = [m.parts[0]["text"] for m in await engine.messages("c")]
        assert texts == ["before", "after"]
    finally:
        await asyncio.wait_for(store.close(), HANG)


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite:///:memory:?cache=shared"])
def test_an_sqlite_url_naming_no_file_is_refused(url: str) -> None:
    """``sqlite:///:memory:`` opened, but each of the store's connections had a
    database of its own: under load, reads that did not run on the writer's
    connection answered 503 "no such table: contexts" (3,993 of 5,202 window
    reads beside four appenders)."""
    with pytest.raises(ValidationError, match="memory://"):
        open_store(url)


async def test_a_store_opened_again_rereads_what_another_wrote_meanwhile(durable_url: str) -> None:
    """The SQLite store kept the context rows it knew across a close and an
    open, and compared the new connection's ``data_version`` with the old
    one's (they count independently): rows another process changed meanwhile
    were taken as current. A metadata update then wrote the stale row back
    (last_seq 1 of 3: the other process's messages fell out of every read),
    and each append failed with 500 "UNIQUE constraint failed"."""
    first = open_store(durable_url)
    await first.open()
    engine = Engine(first)
    try:
        await engine.put_context("c", policy={"strategy": "manual"})
        await engine.append("c", text("first"))  # the store knows the row now
    finally:
        await first.close()
    async with open_store(durable_url) as other:
        await Engine(other).append_batch("c", [text("other 1"), text("other 2")])
    await first.open()
    try:
        updated = await engine.update_metadata("c", {"k": 1})
        assert (updated.last_seq, updated.version) == (3, 3)
        result = await engine.append("c", text("again"))
        assert (result.seqs, result.version) == ([4], 4)
        texts = [m.parts[0]["text"] for m in await engine.messages("c")]
        assert texts == ["first", "other 1", "other 2", "again"]
    finally:
        await first.close()
