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
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from ..engine import Engine
from ..errors import FastpacaError
from ..events import Event, Subscription
from ..jsonutil import dumps_str
from ..settings import Settings
from .errors import HttpError
from .params import bool_param, context_id, int_param
from .replay import first_seq_after, replay
from .state import ENGINE, SETTINGS, STREAMS

__all__ = ["CLOSE_IDLE", "routes"]

log = logging.getLogger("fastpaca.http")
routes = web.RouteTableDef()

CLOSE_IDLE = 4408
_MAX_CLIENT_FRAME = 64 * 1024


class _Session:
    def __init__(
        self,
        ws: web.WebSocketResponse,
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
        self.finished = False
        loop = asyncio.get_running_loop()
        self.last_seen = loop.time()
        self._loop = loop

    # -- sending --------------------------------------------------------------

    async def _send_json(self, data: dict[str, Any]) -> None:
        await self.ws.send_str(dumps_str(data))

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
            await self.ws.close(code=1000, message=b"tombstoned")
            self.finished = True

    async def send_gap(self, expected: int, actual: int) -> None:
        """Versions ``expected .. actual-1`` cannot be delivered."""
        await self._send_json(
            {"type": "gap", "version": actual - 1, "expected": expected, "actual": actual}
        )
        self.last = actual - 1

    async def send_context(self) -> None:
        """The window's figures, when every change up to them has been sent."""
        if not self.dirty or self.finished or not self.sub.queue.empty():
            return
        ctx = await self.engine.store.get_context(self.cid)
        if ctx is None or ctx.version != self.last:
            return
        self.dirty = False
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
            await self.send(Event(self.cid, "tombstoned", ctx.version))
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
        ctx = await self.engine.store.get_context(self.cid)
        if ctx is not None:
            await self.catch_up(ctx.version)

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
                    await self.ws.close(code=CLOSE_IDLE, message=b"idle timeout")
                    return
                if now >= next_ping:
                    await self._send_json({"type": "ping"})
                    next_ping = now + interval
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
                    while not self.finished and not self.sub.queue.empty():
                        await self.handle(self.sub.queue.get_nowait())
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
    ws = web.WebSocketResponse(autoping=False, max_msg_size=_MAX_CLIENT_FRAME)
    if not ws.can_prepare(request).ok:
        raise HttpError(400, "websocket_required", "This route needs a websocket upgrade")
    with engine.bus.subscribe(cid) as sub:
        await ws.prepare(request)
        streams.add(ws)
        session = _Session(ws, engine, request.app[SETTINGS], cid, sub, include)
        reader = asyncio.create_task(session.read_client())
        try:
            await session.start(cursor)
            await session.live(reader)
        except FastpacaError as exc:
            log.warning("stream ended: %s", exc.code, extra={"fields": {"context_id": cid}})
            await ws.close(code=1011, message=exc.code.encode())
        except ConnectionResetError:
            pass
        finally:
            streams.discard(ws)
            if not ws.closed:
                await ws.close()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    return ws
