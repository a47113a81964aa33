"""The real server on a loopback socket, and a fault-injecting TCP proxy in front of it.

Both run on an event loop in a background thread, so the blocking ``Client``
and the ``AsyncClient`` (on the test's own loop) talk to them alike. Each test
gets its own server with its own SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections import deque
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from aiohttp import web
from loopback import serve_app

from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings

T = TypeVar("T")
Fault = Literal["drop_response", "503"]


class LoopThread:
    """An event loop running in a daemon thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


class FaultProxy:
    """A TCP proxy: one upstream connection per client connection, bytes piped both ways.

    ``faults`` is consumed one per new connection: ``"drop_response"`` forwards
    the request but swallows the answer and closes the connection (the server
    did the work, the client never hears of it); ``"503"`` answers a canned
    ``503 store_unavailable`` without forwarding. ``cut()`` aborts every open
    connection (websockets included).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.faults: deque[Fault] = deque()
        self.connections = 0
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def cut(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        fault = self.faults.popleft() if self.faults else None
        if fault == "503":
            await _read_request(reader)
            body = b'{"error":"store_unavailable","message":"injected by the test proxy"}'
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Retry-After: 0\r\nConnection: close\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._open.update((writer, up_writer))
        upstream = asyncio.ensure_future(_pipe(reader, up_writer))
        if fault == "drop_response":
            await up_reader.read(65536)  # the server answered: throw the answer away
            writer.transport.abort()
            up_writer.transport.abort()
        else:
            await _pipe(up_reader, writer)
        upstream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upstream
        self._open.difference_update((writer, up_writer))


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            await reader.readexactly(int(value))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


@dataclass
class Server:
    url: str  # the server itself
    proxy_url: str  # the same server behind the FaultProxy
    proxy: FaultProxy
    thread: LoopThread

    def cut(self) -> None:
        """Abort every connection open through the proxy."""
        self.thread.run(self.proxy.cut())

    def inject(self, *faults: Fault) -> None:
        """Apply ``faults`` to the next connections; open ones are cut, so they are new."""
        self.cut()
        self.proxy.faults.extend(faults)


async def _start(settings: Settings) -> tuple[web.AppRunner, FaultProxy, int]:
    runner, port = await serve_app(create_app(settings))
    proxy = FaultProxy(port)
    await proxy.start()
    return runner, proxy, port


async def _stop(runner: web.AppRunner, proxy: FaultProxy) -> None:
    await proxy.stop()
    await runner.cleanup()


def _serve(tmp_path: Path, **options: Any) -> Iterator[Server]:
    thread = LoopThread()
    store = f"sqlite:///{tmp_path / f'fastpaca-{uuid.uuid4().hex[:8]}.db'}"
    runner, proxy, port = thread.run(_start(Settings(port=0, store=store, **options)))
    try:
        yield Server(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{proxy.port}", proxy, thread)
    finally:
        thread.run(_stop(runner, proxy))
        thread.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from _serve(tmp_path)


@pytest.fixture
def secured_server(tmp_path: Path) -> Iterator[Server]:
    yield from _serve(tmp_path, api_key="test-key")


@pytest.fixture
def pinging_server(tmp_path: Path) -> Iterator[Server]:
    """A server sending its ``{"type": "ping"}`` every 50 ms."""
    yield from _serve(tmp_path, ws_ping_interval=0.05)


@pytest.fixture
def roomy_server(tmp_path: Path) -> Iterator[Server]:
    """A server taking request bodies of up to 16 MiB (messages past 4 MiB)."""
    yield from _serve(tmp_path, max_body_bytes=16 * 1024 * 1024)


@pytest.fixture
def cid() -> str:
    return f"ctx-{uuid.uuid4().hex[:12]}"
