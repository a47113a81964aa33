"""The websocket event stream, with reconnection from the last version seen.

:class:`EventStream` is an async iterator (and async context manager) over
``GET /v1/contexts/{id}/stream?cursor=<version>``. When the connection drops
it reconnects with ``cursor`` set to the last version it yielded, so the
server replays what was missed; events it already yielded are skipped.
:class:`SyncEventStream` drives the same object on a private event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any

import aiohttp

from ..jsonutil import JSONError, loads
from ._core import RetryPolicy
from ._errors import ConnectionFailed, error_from_response
from ._types import StreamEvent

__all__ = ["EventStream", "SyncEventStream"]

CursorSource = int | Callable[[], Awaitable[int]]
_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
_FINAL_EVENTS = frozenset({"tombstoned"})


class EventStream:
    """Server events of one context, in version order, across reconnects.

    Events already yielded (same version and type) are skipped after a
    reconnect; a ``reset`` (the cursor was ahead of the server) restarts the
    count from its version. ``ping`` events are skipped unless
    ``include_pings``; websocket-level pings every ``heartbeat`` seconds keep
    the connection from being dropped as idle. Iteration ends after
    a ``tombstoned`` event; a connection that cannot be re-established within
    the retry policy raises :class:`ConnectionFailed`. Close it with
    ``async with`` or :meth:`aclose`.
    """

    def __init__(
        self,
        url: str,
        *,
        context_id: str,
        headers: dict[str, str],
        cursor: CursorSource,
        retry: RetryPolicy,
        include_messages: bool = True,
        include_pings: bool = False,
        heartbeat: float | None = 30.0,
        connect_timeout: float = 30.0,
    ) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._context_id = context_id
        self._headers = headers
        self._cursor_source = cursor
        self._retry = retry
        self._include_messages = include_messages
        self._include_pings = include_pings
        self._heartbeat = heartbeat
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._version: int | None = None
        self._types_at_version: set[str] = set()
        self._failures = 0
        self._finished = False
        self.reconnects = 0  # how many times a dropped connection was re-established

    @property
    def version(self) -> int | None:
        """The version of the last event yielded (or the starting cursor)."""
        return self._version

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        try:
            while not self._finished:
                ws = self._ws or await self._connect()
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    event = self._accept(msg.data)
                    if event is not None:
                        return event
                elif msg.type in _CLOSED or msg.type == aiohttp.WSMsgType.ERROR:
                    await self._drop()
        except asyncio.CancelledError:
            raise  # a timeout around one read leaves the stream usable
        except BaseException:
            await self.aclose()
            raise
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._finished = True
        await self._drop()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _accept(self, text: str) -> StreamEvent | None:
        try:
            data = loads(text)
        except JSONError:
            return None
        if not isinstance(data, dict):
            return None
        if "error" in data and "type" not in data:
            raise error_from_response(0, data, context_id=self._context_id)
        self._failures = 0
        event = StreamEvent.from_json(data)
        if event.version is None:
            return event if event.type == "ping" and self._include_pings else None
        if event.type == "reset":  # the cursor was ahead of the server: start over from here
            self._version = None
        if self._version is not None:
            if event.version < self._version:
                return None
            if event.version == self._version and event.type in self._types_at_version:
                return None
        if event.version != self._version:
            self._types_at_version = set()
        self._version = event.version
        self._types_at_version.add(event.type)
        if event.type in _FINAL_EVENTS:
            self._finished = True
        return event

    async def _drop(self) -> None:
        if self._ws is not None:
            ws, self._ws = self._ws, None
            await ws.close()

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers)
        if self._version is None:
            source = self._cursor_source
            self._version = source if isinstance(source, int) else await source()
        else:
            self.reconnects += 1
        while True:
            if self._failures:
                if self._failures > self._retry.max_retries:
                    raise ConnectionFailed(
                        f"stream of {self._context_id!r}: gave up after {self._failures} attempts"
                    )
                await asyncio.sleep(self._retry.delay(self._failures - 1))
            # a connection that closes before any event counts as a failure too
            self._failures += 1
            params = {
                "cursor": str(self._version),
                "include_messages": "true" if self._include_messages else "false",
            }
            try:
                # a handshake bounded by the client's timeout (aiohttp's own is 300 s);
                # no bound on an event's size: a stored message may be larger than
                # aiohttp's default 4 MiB (the proxy stores prompts of up to 32 MiB)
                connecting = self._session.ws_connect(
                    self._url, params=params, heartbeat=self._heartbeat, max_msg_size=0
                )
                self._ws = await asyncio.wait_for(connecting, self._connect_timeout)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status not in (429, 502, 503, 504):
                    raise error_from_response(
                        exc.status,
                        _handshake_body(exc),
                        context_id=self._context_id,
                    ) from exc
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            else:
                return self._ws


def _handshake_body(exc: aiohttp.WSServerHandshakeError) -> dict[str, Any]:
    """The error a refused handshake stands for. aiohttp keeps no body of the
    refusal (its own message is "Invalid response status"): the server's words
    for the refusals it makes, the status for any other."""
    codes = {404: "context_not_found", 401: "unauthorized"}
    messages = {401: "Missing or invalid API key"}
    message = messages.get(exc.status, f"HTTP {exc.status}: the event stream was refused")
    return {"error": codes.get(exc.status, ""), "message": message}


class SyncEventStream:
    """:class:`EventStream` as a blocking iterator, run on its own event loop.

    Not usable from inside a running event loop: use the async client there.
    """

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream
        self._loop = asyncio.new_event_loop()

    @property
    def version(self) -> int | None:
        return self._stream.version

    @property
    def reconnects(self) -> int:
        return self._stream.reconnects

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        if self._loop.is_closed():
            raise StopIteration
        try:
            return self._loop.run_until_complete(self._stream.__anext__())
        except StopAsyncIteration:
            self.close()
            raise StopIteration from None

    def close(self) -> None:
        if not self._loop.is_closed():
            try:
                self._loop.run_until_complete(self._stream.aclose())
            finally:
                self._loop.close()

    def __enter__(self) -> SyncEventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
