"""The Postgres store after the server ended its connections.

When PostgreSQL terminates a backend (a restart, ``pg_terminate_backend``, an
idle timeout) it sends the connection a last FATAL message, then closes it. A
pooled connection that has heard the message but not yet the close looks open
to the pool, which hands it out, and asyncpg refuses the next statement on it
before sending anything. Such an operation changed nothing, so the store runs
it again on a new connection: reads, and writes of every path (a write from a
known row, one that reads first, a locked one, a group statement); the caller
never hears of it. The moment between the two is short (the backend's exit);
here a loopback forwarder between the store and PostgreSQL
(:class:`HoldingForwarder`) holds the close back, so the moment lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from fastpaca_core import Engine
from fastpaca_core.stores._pgschema import split_url
from fastpaca_core.stores.postgres import PostgresStore

pytestmark = pytest.mark.postgres

MANUAL = {"strategy": "manual"}
POOL = 3


def text(value: str) -> dict[str, object]:
    return {"role": "user", "parts": [{"type": "text", "text": value}]}


class HoldingForwarder:
    """Forwards loopback TCP connections to PostgreSQL. While ``hold`` is set,
    when the server closes one, what it sent last reaches the client, but the
    client's side stays open until the client closes it (``held`` counts those
    connections); otherwise the close is passed on."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.hold = False
        self.held = 0
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._target)
        self._writers.update((client_w, server_w))
        server_gone = asyncio.Event()

        async def to_server() -> None:
            with contextlib.suppress(OSError):
                while data := await client_r.read(65536):
                    if server_gone.is_set():
                        return  # nothing reaches the server any more
                    server_w.write(data)
                    await server_w.drain()

        upstream = asyncio.create_task(to_server())
        self._tasks.add(upstream)
        with contextlib.suppress(OSError):
            while data := await server_r.read(65536):
                client_w.write(data)
                await client_w.drain()
        server_gone.set()
        if self.hold:  # the client's side stays open until it sends or closes
            self.held += 1
            await upstream
        client_w.close()
        await upstream
        self._tasks.discard(upstream)
        server_w.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


@dataclass
class Setup:
    store: PostgresStore
    admin: asyncpg.Connection
    forwarder: HoldingForwarder

    def pooled(self) -> list[asyncpg.Connection]:
        assert self.store._pool is not None
        return [h._con for h in self.store._pool._holders if h._con is not None]

    async def terminate_pool(self) -> None:
        """Terminate the backend of every pooled connection, and wait until each
        connection has heard its FATAL message while its socket stays open."""
        conns = self.pooled()
        assert len(conns) == POOL
        held = self.forwarder.held
        pids = [c.get_server_pid() for c in conns]
        self.forwarder.hold = True
        await self.admin.execute("SELECT pg_terminate_backend(p) FROM unnest($1::int[]) AS p", pids)
        deadline = time.monotonic() + 10
        while self.forwarder.held < held + POOL:
            assert time.monotonic() < deadline, "the backends were not terminated"
            await asyncio.sleep(0.005)
        self.forwarder.hold = False
        for _ in range(5):  # the last bytes are in the client sockets: read them
            await asyncio.sleep(0)
        assert not any(c.is_closed() for c in conns)  # to the pool they look open


@pytest.fixture
async def setup(pg_url: str) -> AsyncIterator[Setup]:
    parts = urlsplit(pg_url)
    assert parts.hostname is not None and parts.port is not None
    forwarder = HoldingForwarder(parts.hostname, parts.port)
    await forwarder.start()
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{forwarder.port}")
    store = PostgresStore(urlunsplit(parts._replace(netloc=netloc)), min_size=POOL, max_size=POOL)
    await store.open()
    dsn, _ = split_url(pg_url)
    admin = await asyncpg.connect(dsn)
    try:
        yield Setup(store, admin, forwarder)
    finally:
        await admin.close()
        await store.close()
        await forwarder.stop()


async def texts(engine: Engine, cid: str) -> list[str]:
    return [r.parts[0]["text"] for r in await engine.messages(cid, limit=100)]


READS: dict[str, Callable[[PostgresStore], Awaitable[object]]] = {
    "get_context": lambda s: s.get_context("c"),
    "read_window": lambda s: s.read_window("c"),
    "list_contexts": lambda s: s.list_contexts(10, None),
    "read_messages": lambda s: s.read_messages("c", 1, 10),
    "ping": lambda s: s.ping(),
}


@pytest.mark.parametrize("name", list(READS))
async def test_a_read_on_a_terminated_connection_runs_again(setup: Setup, name: str) -> None:
    engine = Engine(setup.store)
    await engine.put_context("c", policy=MANUAL)
    await engine.append("c", text("one"))
    expected = await READS[name](setup.store)
    await setup.terminate_pool()
    assert await READS[name](setup.store) == expected


async def _append_known(setup: Setup, engine: Engine) -> None:
    await engine.append("c", text("two"))  # the store knows the row: the write is all


async def _append_reading(setup: Setup, engine: Engine) -> None:
    setup.store._known.clear()  # the row is read first
    await engine.append("c", text("two"))


async def _append_locked(setup: Setup, engine: Engine) -> None:
    setup.store._contended["c"] = time.monotonic()  # straight to the locked path
    await engine.append("c", text("two"))


async def _append_grouped(setup: Setup, engine: Engine) -> None:
    group = setup.store._group
    assert group.claim() and group.claim()  # both lanes busy: the append queues
    call = asyncio.create_task(engine.append("c", text("two")))
    for _ in range(500):
        if group._queue:
            break
        await asyncio.sleep(0.01)
    assert group._queue, "the append did not queue"
    group.done()  # a lane sends the queued append, in a group statement
    group.done()
    await call


WRITES: dict[str, Callable[[Setup, Engine], Awaitable[None]]] = {
    "known row": _append_known,
    "read first": _append_reading,
    "locked": _append_locked,
    "group": _append_grouped,
}


@pytest.mark.parametrize("path", list(WRITES))
async def test_a_write_on_a_terminated_connection_runs_again(setup: Setup, path: str) -> None:
    """The connection was dead before the write was sent: no 503, no unknown
    outcome; the write lands once, and the context takes the next one."""
    engine = Engine(setup.store)
    await engine.put_context("c", policy=MANUAL)
    await engine.append("c", text("one"))
    await setup.terminate_pool()
    await WRITES[path](setup, engine)
    await engine.append("c", text("three"))
    assert await texts(engine, "c") == ["one", "two", "three"]
    ctx = await engine.get_context("c")
    assert ctx.last_seq == ctx.version == 3
