"""The websocket event stream, with reconnection from the last version seen.

:class:`EventStream` is an async iterator (and async context manager) over
``GET /v1/contexts/{id}/stream?cursor=<version>``. When the connection drops
it reconnects with ``cursor`` set to the last version it yielded, so the
server replays what was missed; events it already yielded are skipped.
:class:`SyncEventStream` drives the same object on a private event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar
from urllib.request import getproxies, proxy_bypass

import aiohttp
from yarl import URL

from ..errors import FastpacaError
from ..jsonutil import JSONError, loads
from ._core import RetryPolicy
from ._errors import ConnectionFailed, error_from_response
from ._types import StreamEvent

__all__ = ["EventStream", "SyncEventStream"]

T = TypeVar("T")
CursorSource = int | Callable[[], Awaitable[int]]
_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
_FINAL_EVENTS = frozenset({"tombstoned"})


class EventStream:
    """Server events of one context, in version order, across reconnects.

    Events already yielded (same version and type; for ``context``, the same
    figures too) are skipped after a reconnect; a ``reset`` (the cursor was
    ahead of the server) restarts the count from its version. ``ping`` events
    are skipped unless ``include_pings``; websocket-level pings every
    ``heartbeat`` seconds keep the connection from being dropped as idle.
    Iteration ends after a ``tombstoned`` event (or at once, when the context
    was tombstoned at the cursor). The first connection is tried as a request
    is (``max_retries``); a dropped one for ``reconnect_timeout`` seconds too.
    Past that, :class:`ConnectionFailed`. Close it with ``async with`` or
    :meth:`aclose`.
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
        reconnect_timeout: float | None = 60.0,
    ) -> None:
        # taken as encoded: yarl would otherwise decode the id's %2E and resolve
        # the ids "." and ".." as path steps, reaching another route
        self._url = URL(url, encoded=True)
        self._connect_timeout = connect_timeout
        self._reconnect_timeout = reconnect_timeout
        self._context_id = context_id
        self._headers = headers
        self._cursor_source = cursor
        self._retry = retry
        self._include_messages = include_messages
        self._include_pings = include_pings
        self._heartbeat = heartbeat
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._version: int | None = None
        self._types_at_version: set[str] = set()
        self._last_context: dict[str, Any] | None = None  # the last `context` event yielded
        self._failures = 0  # attempts since the last event accepted
        self._outage_since = 0.0  # when the first of them started
        self._last_failure: BaseException | None = None  # what the last attempt met
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
                    if _tombstoned(msg):  # nothing after the cursor, and nothing to come
                        self._finished = True
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
                # a repeat; but a `context` event with new figures is news: a
                # settings change (a new budget) moves them without a new version
                if event.type != "context" or event.data == self._last_context:
                    return None
        if event.version != self._version:
            self._types_at_version = set()
        self._version = event.version
        self._types_at_version.add(event.type)
        if event.type == "context":
            self._last_context = event.data
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
            self._proxy = _env_proxy(self._url)
        reconnecting = self._version is not None
        if self._version is None:
            source = self._cursor_source
            self._version = source if isinstance(source, int) else await source()
        while True:
            params = {
                "cursor": str(self._version),
                "include_messages": "true" if self._include_messages else "false",
            }
            if self._failures:
                if self._spent(reconnecting):
                    raise await self._give_up(params)
                await asyncio.sleep(self._retry.delay(min(self._failures - 1, 30)))
            else:  # an outage starts (it ends with the next event accepted)
                self._outage_since = asyncio.get_running_loop().time()
            # a connection that closes before any event counts as a failure too
            self._failures += 1
            self._last_failure = None
            try:
                # a handshake bounded by the client's timeout (aiohttp's own is 300 s);
                # no bound on an event's size: a stored message may be larger than
                # aiohttp's default 4 MiB (the proxy stores prompts of up to 32 MiB)
                connecting = self._session.ws_connect(
                    self._url,
                    params=params,
                    heartbeat=self._heartbeat,
                    max_msg_size=0,
                    proxy=self._proxy,
                )
                self._ws = await asyncio.wait_for(connecting, self._connect_timeout)
                if reconnecting:
                    self.reconnects += 1
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status not in (429, 502, 503, 504):
                    raise await self._refusal(exc, params) from exc
                self._last_failure = exc
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._last_failure = exc
            else:
                return self._ws

    def _spent(self, reconnecting: bool) -> bool:
        """Whether to stop trying. The first connection has the request retries
        (``max_retries``): a wrong URL fails fast. A dropped one is tried again
        for ``reconnect_timeout`` seconds too, so that it outlasts a restart of
        the server (a deploy), which refuses connections for seconds."""
        if self._failures <= self._retry.max_retries:
            return False
        if not reconnecting:
            return True
        if self._reconnect_timeout is None:
            return False
        elapsed = asyncio.get_running_loop().time() - self._outage_since
        return elapsed >= self._reconnect_timeout

    async def _give_up(self, params: dict[str, str]) -> ConnectionFailed:
        """The error once the retries are spent, saying what the last attempt met."""
        cause: BaseException | None = self._last_failure
        if isinstance(cause, aiohttp.WSServerHandshakeError):  # 503 too_many_streams, ...
            cause = await self._refusal(cause, params)
        if cause is None:
            last = "the connection closed before any event"
        elif isinstance(cause, FastpacaError):
            last = f"HTTP {getattr(cause, 'status', 0)} {cause.code}: {cause}"
        else:
            last = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        failed = ConnectionFailed(
            f"stream of {self._context_id!r}: gave up after {self._failures} attempts "
            f"(the last: {last})"
        )
        failed.__cause__ = cause
        return failed

    async def _refusal(
        self, exc: aiohttp.WSServerHandshakeError, params: dict[str, str]
    ) -> FastpacaError:
        """The server's own error for a refused handshake. aiohttp keeps no body
        of the refusal, so the same URL is asked once more without the upgrade:
        the server checks the id, the cursor, the key and the context before it
        looks for an upgrade, so it refuses that request for the same reason."""
        body: Any = None
        if self._session is not None:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    get = self._session.get(self._url, params=params, proxy=self._proxy)
                    async with get as response:
                        if response.status == exc.status:
                            body = loads(await response.read())
            except (aiohttp.ClientError, OSError, TimeoutError, JSONError):
                pass
        if not isinstance(body, dict) or not body.get("error"):
            body = _handshake_body(exc)
        return error_from_response(exc.status, body, context_id=self._context_id)


def _env_proxy(url: URL) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY``, unless ``NO_PROXY`` covers its host), as
    httpx takes it for the REST calls: the stream goes the same way they do.
    (aiohttp's own ``trust_env`` would also read ``.netrc`` credentials, which
    clash with the API key's ``Authorization`` header.)"""
    if url.host is None or proxy_bypass(url.host):
        return None
    proxies = getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or not proxy.lower().startswith(("http://", "https://")):
        return None  # none, or a kind aiohttp cannot use (socks)
    return proxy


def _tombstoned(msg: aiohttp.WSMessage) -> bool:
    """The close the server sends, with no event, to a client whose cursor is
    already the version of a tombstoned context (it has seen everything)."""
    return (
        msg.type == aiohttp.WSMsgType.CLOSE
        and msg.data == aiohttp.WSCloseCode.OK
        and msg.extra == "tombstoned"
    )


def _handshake_body(exc: aiohttp.WSServerHandshakeError) -> dict[str, Any]:
    """The error a refused handshake stands for. aiohttp keeps no body of the
    refusal (its own message is "Invalid response status"): the server's words
    for the refusals it makes, the status for any other."""
    codes = {404: "context_not_found", 401: "unauthorized"}
    messages = {401: "Missing or invalid API key"}
    message = messages.get(exc.status, f"HTTP {exc.status}: the event stream was refused")
    return {"error": codes.get(exc.status, ""), "message": message}


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


class SyncEventStream:
    """:class:`EventStream` as a blocking iterator, run on its own event loop.

    Inside a running event loop (a notebook, an async framework) that private
    loop runs on a helper thread while the caller waits: the calls block, as
    every call of the sync client does there.
    """

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream
        self._loop = asyncio.new_event_loop()
        self._helper: ThreadPoolExecutor | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro`` run to its end on the private loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: no loop in this thread
            return self._loop.run_until_complete(coro)
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="fastpaca-stream")
        future = self._helper.submit(self._loop.run_until_complete, coro)
        try:
            return future.result()
        except BaseException:
            if not future.done():  # the wait was interrupted (Ctrl-C): stop the read
                self._loop.call_soon_threadsafe(_cancel_all, self._loop)
                concurrent.futures.wait([future])
            raise

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
            return self._run(self._stream.__anext__())
        except StopAsyncIteration:
            self.close()
            raise StopIteration from None

    def close(self) -> None:
        if not self._loop.is_closed():
            try:
                self._run(self._stream.aclose())
            finally:
                self._loop.close()
                if self._helper is not None:
                    self._helper.shutdown()
                    self._helper = None

    def __del__(self) -> None:
        """A stream left without ``close`` (``for event in ctx.stream(): break``)
        is closed once it is garbage: nothing can read it any more."""
        loop = getattr(self, "_loop", None)
        if loop is None or loop.is_closed() or loop.is_running():
            return
        try:
            self.close()
        except (RuntimeError, OSError, aiohttp.ClientError):
            pass  # at interpreter exit, say: the process is going anyway

    def __enter__(self) -> SyncEventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
