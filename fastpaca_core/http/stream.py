"""``GET /v1/contexts/{id}/stream``: a context's change events over a websocket.

On connect the stream subscribes to the engine's bus *first*, then reads the
context: every version up to the one read is replayed from the store (log
rows rebuilt as ``message`` events, stored ``compaction`` / ``tombstoned``
events), everything after arrives through the subscription. Events are
de-duplicated by version; a jump in versions is filled from the store, and
what the store cannot fill is reported as a ``gap``. A ``context`` event
(``needs_compaction``, ``used_tokens``) follows each burst of changes and
carries the version it describes. ``remote`` hints (a change committed by
another process sharing the PostgreSQL store) are caught up from the store.

Close codes: 1000 after ``tombstoned``, 1001 on server shutdown, 1011 when the
store fails, 4408 for a client silent longer than the idle timeout.

Backpressure: a send waits while the client's socket buffer is full. One
during which the client took no byte for the idle timeout drops the client as
a slow consumer (one still taking the bytes of a large frame, however slowly,
is not): its connection is cut, as a close frame would wait behind the data
it does not take. A timer of the session finds it, not a timeout around each
send, which would cost every frame of the clients that keep up. Meanwhile the
events not sent yet wait in the subscription, bounded in bytes
(``events.py``); past the bound they are dropped and read back from the store
later. Every close waits a bounded time for the
client (:func:`close_within`), then cuts the connection.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.abc import AbstractStreamWriter

from ..engine import Engine
from ..errors import FastpacaError
from ..events import Event, Subscription
from ..jsonutil import dumps_str
from ..settings import Settings
from .errors import HttpError
from .params import bool_param, context_id, int_param
from .replay import first_seq_after, replay
from .state import ENGINE, SETTINGS, STREAMS

__all__ = ["CLOSE_IDLE", "StreamSocket", "close_within", "routes"]

log = logging.getLogger("fastpaca.http")
routes = web.RouteTableDef()

CLOSE_IDLE = 4408
CLOSE_TIMEOUT = 10.0  # s a close waits for the client's answer at most (aiohttp's own default)
# s each stream's client gets to answer the close on shutdown (at most half
# the shutdown timeout): the close frame is out at once, the answer is a courtesy
SHUTDOWN_CLOSE_TIMEOUT = 1.0
_MAX_CLIENT_FRAME = 64 * 1024
if sys.platform.startswith("linux"):
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ  # bytes in a socket's send queue (SIOCOUTQ)
else:
    _OUTQ = None


class StreamSocket(web.WebSocketResponse):
    """A stream's websocket; it keeps its connection's transport, to cut it."""

    transport: asyncio.Transport | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter:
        self.transport = request.transport
        return await super().prepare(request)

    def abort(self) -> None:
        """Cut the connection, dropping whatever is still to be written."""
        if self.transport is not None:
            self.transport.abort()

    def unsent(self) -> int:
        """The bytes written but not yet taken by the client: in the transport's
        buffer and, on Linux, in the kernel's send queue (``TIOCOUTQ``), which a
        client reading slowly drains long before the kernel takes more from the
        transport (it waits for much of its buffer, megabytes, to be free)."""
        transport = self.transport
        if transport is None:
            return 0
        unsent = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        outq = _OUTQ
        fd = -1 if outq is None or sock is None else sock.fileno()
        if outq is None or fd < 0:  # not Linux, or the socket is closed already
            return unsent
        try:
            queued = fcntl.ioctl(fd, outq, b"\0\0\0\0")
        except OSError:
            return unsent  # the socket is gone: the transport's buffer is all there is
        return unsent + int.from_bytes(queued, sys.byteorder, signed=True)


async def close_within(
    ws: web.WebSocketResponse, timeout: float, *, code: int = 1000, message: bytes = b""
) -> None:
    """Close ``ws`` with ``code``, waiting at most ``timeout`` for the client.

    aiohttp's close waits until the close frame is written out, then for the
    client's answer; behind a buffer the client does not read, the first wait
    never ends. So when the time is up, or data is still waiting to be written
    after the close, the connection of a :class:`StreamSocket` is aborted.

    The close runs in a task of its own, waited for, never cancelled while the
    connection is up: aiohttp's writers share one future to wait for the
    buffer to drain, and cancelling a task waiting on it would cancel it for
    every other (a stream's send under way).
    """
    closing = asyncio.create_task(ws.close(code=code, message=message))
    closing.add_done_callback(_retrieve)
    own = ws if isinstance(ws, StreamSocket) else None
    try:
        await asyncio.wait((closing,), timeout=timeout)
    finally:
        if own is not None and (not closing.done() or own.unsent()):
            own.abort()
    if not closing.done():  # with the connection cut, it ends at once
        await asyncio.wait((closing,), timeout=timeout)
        closing.cancel()


def _retrieve(task: asyncio.Task[bool]) -> None:
    """A close that failed has nothing to report: the connection is gone."""
    if not task.cancelled():
        task.exception()


class _Session:
    def __init__(
        self,
        ws: StreamSocket,
        engine: Engine,
        settings: Settings,
        cid: str,
        sub: Subscription,
        include_messages: bool,
    ) -> None:
        self.ws = ws
        self.engine = engine
        self.settings = settings
        self.cid = cid
        self.sub = sub
        self.include_messages = include_messages
        self.last = 0  # the highest version sent
        self.next_seq = 1  # the first seq not sent yet
        self.dirty = True  # changes were sent since the last `context` event
        self.context_sent: tuple[int, bool, int] | None = None  # its figures
        self.finished = False
        loop = asyncio.get_running_loop()
        self.last_seen = loop.time()
        self._loop = loop
        self.idle = settings.ws_idle_timeout
        self.close_timeout = min(self.idle, CLOSE_TIMEOUT)
        self._send_started: float | None = None  # when the send under way began
        self._unsent = -1  # the bytes waiting to be taken at the watchdog's last look
        self._moved = 0.0  # when it last saw the client take some
        self._watchdog: asyncio.TimerHandle | None = None

    # -- sending --------------------------------------------------------------

    async def _send_json(self, data: dict[str, Any]) -> None:
        text = dumps_str(data)
        self._send_started = self._loop.time()
        try:
            await self.ws.send_str(text)
        finally:
            self._send_started = None

    def watch(self) -> None:
        """Start the watchdog of sends: a send under way during which the client
        took no byte for the idle timeout drops the client. A slow reader that
        keeps taking bytes of a large frame is not dropped.

        It looks every half idle timeout while nothing is being sent, and
        every quarter while a send is under way, comparing the bytes still
        waiting to be taken with its last look.
        """
        now = self._loop.time()
        started = self._send_started
        if started is None:
            self._unsent = -1
            delay = self.idle / 2
        else:
            unsent = self.ws.unsent()
            if self._unsent < 0 or unsent < self._unsent:
                self._moved = now  # the client took bytes since the last look
            self._unsent = unsent
            if now - max(started, self._moved) >= self.idle:
                self._watchdog = None
                self._drop_slow()
                return
            delay = self.idle / 4
        self._watchdog = self._loop.call_later(delay, self.watch)

    def unwatch(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _drop_slow(self) -> None:
        """Cut the connection of a client that took no byte for the idle timeout.

        A close frame would wait behind the data it does not take, so the
        connection is aborted: the send under way returns, the next one fails.
        """
        log.info("stream dropped: slow consumer", extra={"fields": {"context_id": self.cid}})
        self.ws.abort()

    async def send(self, event: Event) -> None:
        data = event.to_json()
        if event.type == "message":
            self.next_seq = max(self.next_seq, int(event.data["seq"]) + 1)
            if not self.include_messages:
                data.pop("message", None)
        await self._send_json(data)
        self.last = event.version
        self.dirty = True
        if event.type == "tombstoned":
            self.finished = True
            await close_within(self.ws, self.close_timeout, code=1000, message=b"tombstoned")

    async def send_gap(self, expected: int, actual: int) -> None:
        """Versions ``expected .. actual-1`` cannot be delivered."""
        await self._send_json(
            {"type": "gap", "version": actual - 1, "expected": expected, "actual": actual}
        )
        self.last = actual - 1

    async def send_context(self) -> None:
        """The window's figures, when every change up to them has been sent and
        they differ from the figures sent last (a settings change that leaves
        them as they were sends nothing)."""
        if not self.dirty or self.finished or not self.sub.empty():
            return
        ctx = await self.engine.store.get_context(self.cid)
        if ctx is None or ctx.version != self.last:
            return
        self.dirty = False
        figures = (ctx.version, ctx.needs_compaction(), ctx.used_tokens)
        if figures == self.context_sent:
            return
        self.context_sent = figures
        await self._send_json(
            {
                "type": "context",
                "version": ctx.version,
                "needs_compaction": ctx.needs_compaction(),
                "used_tokens": ctx.used_tokens,
            }
        )

    # -- replay and live ------------------------------------------------------------

    async def catch_up(self, upto: int) -> None:
        """Send every version in ``(last, upto]`` from the store."""
        async for event in replay(self.engine.store, self.cid, self.next_seq, self.last, upto):
            if event.version <= self.last:
                continue
            if event.version > self.last + 1:
                await self.send_gap(self.last + 1, event.version)
            await self.send(event)
            if self.finished:
                return
        if self.last < upto:
            await self.send_gap(self.last + 1, upto + 1)

    async def start(self, cursor: int) -> None:
        ctx = await self.engine.get_context(self.cid)
        if cursor > ctx.version and ctx.tombstoned:  # (a cursor from elsewhere)
            # the one thing left to say, at its own version: no `reset` to it first
            await self.send(Event(self.cid, "tombstoned", ctx.version))
            return
        if cursor > ctx.version:
            await self._send_json({"type": "reset", "version": ctx.version})
            self.last = ctx.version
            self.next_seq = ctx.last_seq + 1
        else:
            self.last = cursor
            store = self.engine.store
            self.next_seq = await first_seq_after(store, self.cid, ctx.last_seq, cursor)
            await self.catch_up(ctx.version)
        if ctx.tombstoned and not self.finished:
            # the client has the tombstone's version already (its cursor, or a
            # `gap` to it): a `tombstoned` event would repeat it
            if self.last >= ctx.version:
                self.finished = True
                await close_within(self.ws, self.close_timeout, code=1000, message=b"tombstoned")
            else:  # (replayed above, when the store holds it)
                await self.send(Event(self.cid, "tombstoned", ctx.version))
            return
        await self.send_context()

    async def handle(self, event: Event) -> None:
        if event.type == "config":
            self.dirty = True
            return
        if event.type == "remote":  # another process committed up to this version
            if event.version > self.last:
                await self.catch_up(event.version)
            else:
                self.dirty = True
            return
        if event.version <= self.last:
            return
        if event.version > self.last + 1:
            await self.catch_up(event.version - 1)
            if self.finished or event.version <= self.last:
                return
        await self.send(event)

    async def resync(self) -> None:
        """The subscription dropped events: read the missed ones from the store."""
        self.sub.overflowed = False
        self.dirty = True  # a dropped `config` event changes the figures, not the version
        ctx = await self.engine.store.get_context(self.cid)
        if ctx is not None:
            await self.catch_up(ctx.version)

    async def check_store(self) -> None:
        """At each ping: a change the store holds that no event announced (its
        writer died between its commit and its hint to the other processes, or
        never learnt its write had committed) is caught up with now."""
        try:
            ctx = await self.engine.store.get_context(self.cid)
        except FastpacaError:
            return  # the store is away: the next ping looks again
        if ctx is not None and ctx.version > self.last:
            await self.catch_up(ctx.version)
            await self.send_context()

    async def read_client(self) -> None:
        """Note every frame the client sends; answer its protocol pings."""
        async for msg in self.ws:
            self.last_seen = self._loop.time()
            if msg.type == WSMsgType.PING:
                await self.ws.pong(msg.data)

    async def live(self, reader: asyncio.Task[None]) -> None:
        interval = self.settings.ws_ping_interval
        idle = self.settings.ws_idle_timeout
        next_ping = self._loop.time() + interval
        getter: asyncio.Task[Event] | None = None
        try:
            while not self.finished and not self.ws.closed:
                if self.sub.overflowed:
                    await self.resync()
                    await self.send_context()
                    continue
                now = self._loop.time()
                if now - self.last_seen > idle:
                    await close_within(
                        self.ws, self.close_timeout, code=CLOSE_IDLE, message=b"idle timeout"
                    )
                    return
                if now >= next_ping:
                    await self._send_json({"type": "ping"})
                    next_ping = now + interval
                    await self.check_store()
                if getter is None:
                    getter = asyncio.create_task(self.sub.get())
                wait = max(0.0, min(next_ping, self.last_seen + idle) - now)
                done, _ = await asyncio.wait(
                    {getter, reader}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if reader in done:
                    return
                if getter in done:
                    event = getter.result()
                    getter = None
                    await self.handle(event)
                    while not self.finished and not self.sub.empty():
                        await self.handle(self.sub.get_nowait())
                    await self.send_context()
        finally:
            if getter is not None:
                getter.cancel()


def _stream_params(request: web.Request) -> tuple[str, int, bool]:
    cid = context_id(request)
    cursor = int_param(request, "cursor") or 0
    include = bool_param(request, "include_messages", True)
    return cid, cursor, include


@routes.get("/v1/contexts/{id}/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    cid, cursor, include = _stream_params(request)
    streams = request.app[STREAMS]
    if streams.closing:
        raise HttpError(503, "shutting_down", "The server is shutting down")
    if not streams.take():  # before any await: racing upgrades see the slot taken
        raise HttpError(
            503, "too_many_streams", f"This process already serves {streams.limit} streams"
        )
    try:
        return await _serve(request, cid, cursor, include)
    finally:
        streams.give_back()


async def _serve(request: web.Request, cid: str, cursor: int, include: bool) -> web.StreamResponse:
    engine = request.app[ENGINE]
    streams = request.app[STREAMS]
    await engine.get_context(cid)  # 404 as plain HTTP, before upgrading
    ws = StreamSocket(autoping=False, max_msg_size=_MAX_CLIENT_FRAME)
    if not ws.can_prepare(request).ok:
        raise HttpError(400, "websocket_required", "This route needs a websocket upgrade")
    with engine.bus.subscribe(cid) as sub:
        await ws.prepare(request)
        streams.add(ws)
        session = _Session(ws, engine, request.app[SETTINGS], cid, sub, include)
        reader = asyncio.create_task(session.read_client())
        session.watch()
        try:
            await session.start(cursor)
            await session.live(reader)
        except FastpacaError as exc:
            log.warning("stream ended: %s", exc.code, extra={"fields": {"context_id": cid}})
            await close_within(ws, session.close_timeout, code=1011, message=exc.code.encode())
        except ConnectionError:  # the client reset, or was dropped as a slow consumer
            pass
        finally:
            session.unwatch()
            streams.discard(ws)
            if not ws.closed:
                await close_within(ws, session.close_timeout)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    return ws
