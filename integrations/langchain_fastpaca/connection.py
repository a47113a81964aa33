"""Where histories keep their messages: an embedded store, or a Fastpaca server.

- :class:`EmbeddedConnection`: the core :class:`~fastpaca_core.Engine` over a
  store URL in this process (``sqlite:///path``, the default
  ``sqlite:///fastpaca.db``; ``postgresql://...``; ``memory://``).
- :class:`RemoteConnection`: the HTTP API of a ``fastpaca serve`` through
  :class:`~fastpaca_core.client.AsyncClient`.

Both are asynchronous underneath and live on one event loop (see ``_loop``):

- ``async with connection:`` (or ``await connection.aopen()``) opens it on
  the running loop: the async history methods then run natively there, with
  no thread involved;
- ``with connection:`` (or ``open()``, or simply using it) opens it on a
  private loop in a daemon thread: sync methods submit to that loop and wait,
  async methods from any loop await it without blocking theirs.

Open one connection per process (or per store) and share it between
histories: it holds the store's pool or the HTTP client.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import concurrent.futures.thread  # see _close_at_exit
import contextvars
import json
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from fastpaca_core import Engine, open_store
from fastpaca_core.client import DEFAULT_BASE_URL, AsyncClient, AsyncContext

from ._loop import Home, LoopThread, running_loop

__all__ = [
    "DEFAULT_STORE_URL",
    "Connection",
    "ContextOptions",
    "EmbeddedConnection",
    "RemoteConnection",
    "connect",
]

T = TypeVar("T")
DEFAULT_STORE_URL = "sqlite:///fastpaca.db"
_KNOWN_CONTEXTS = 4096  # (context, options) pairs a connection remembers having put
_SERVER_PAGE = 1000  # the largest page a server serves by default (FASTPACA_MAX_PAGE_SIZE)
StoredDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ContextOptions:
    """The context's configuration; ``None`` leaves a field as it is (or the default)."""

    token_budget: int | None = None
    trigger_ratio: float | None = None
    policy: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


log = logging.getLogger("fastpaca.langchain")
# Connections running on a loop thread of their own, closed on the way out (below).
_THREADED: weakref.WeakSet[Connection] = weakref.WeakSet()


def _close_at_exit() -> None:
    """Close the connections still open when the interpreter exits.

    It runs before ``concurrent.futures`` refuses new work to its thread pools,
    through which the SQLite store closes: ``atexit`` (and so the finalizer of
    a history that owns its connection) comes too late for that.
    """
    for connection in list(_THREADED):
        try:
            connection.close()
        except Exception:
            log.exception("closing %r on exit failed", connection)


# threading's own exit hooks run newest first: concurrent.futures.thread, imported
# above, registered its hook before this one, so this one runs before it.
_register_exit = getattr(threading, "_register_atexit", None)
if _register_exit is not None:  # CPython
    _register_exit(_close_at_exit)


def _failed(future: concurrent.futures.Future[None]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _live(home: Home) -> bool:
    """Whether a settled home has something to release: it opened, and its loop runs.

    A failed opening left nothing behind (its error was the caller's already).
    """
    return not _failed(home.ready) and not home.loop.is_closed() and home.loop.is_running()


class Connection(abc.ABC):
    """A store or a server, reached from sync and async code alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._home: Home | None = None
        self._closed = False
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()

    # -- what a backend provides (run on the home loop) ---------------------------

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release what ``_open`` took; called only after ``_open`` succeeded."""

    @abc.abstractmethod
    async def put_context(self, context_id: str, options: ContextOptions) -> None:
        """Create the context, or update the options given."""

    @abc.abstractmethod
    async def append(self, context_id: str, messages: Sequence[StoredDict]) -> None:
        """Append messages atomically, in one round trip."""

    @abc.abstractmethod
    async def window(self, context_id: str, budget_tokens: int | None) -> list[StoredDict]:
        """The LLM context's messages."""

    @abc.abstractmethod
    async def messages(self, context_id: str, after_seq: int, limit: int) -> list[StoredDict]:
        """Up to ``limit`` log messages with ``seq > after_seq``, oldest first."""

    @abc.abstractmethod
    async def compact(self, context_id: str, replacement: Sequence[StoredDict]) -> None:
        """Replace the LLM context; the log is untouched."""

    @abc.abstractmethod
    async def delete(self, context_id: str) -> None:
        """Tombstone the context."""

    async def ensure_context(self, context_id: str, options: ContextOptions) -> None:
        """:meth:`put_context`, once per context and options on this connection.

        ``RunnableWithMessageHistory`` builds a history per call; this keeps
        that from costing a write per call.
        """
        key = (context_id, options.key())
        if key in self._known:
            self._known.move_to_end(key)
            return
        await self.put_context(context_id, options)
        self._known[key] = None
        if len(self._known) > _KNOWN_CONTEXTS:
            self._known.popitem(last=False)

    # -- running operations -----------------------------------------------------

    def _started(self) -> Home:
        """The home, starting a private loop thread (and opening there) if none.

        A failed opening is not kept: the next call tries again.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this Fastpaca connection is closed")
            if self._home is not None and (self._home.inherited or _failed(self._home.ready)):
                self._home = None  # an inherited one belongs to the parent: left alone
            if self._home is None:
                # Started in an empty context: the loop's own handles and the tasks
                # the store starts there (the SQLite writer...) live as long as the
                # connection, and would keep the caller's context variables alive
                # with them (LangChain's run config, holding the history that may
                # own this very connection: it would never be collected).
                self._home = contextvars.Context().run(self._new_home)
            return self._home

    def _new_home(self) -> Home:
        thread = LoopThread(f"fastpaca-{type(self).__name__}")
        ready = asyncio.run_coroutine_threadsafe(self._open(), thread.loop)
        ready.add_done_callback(lambda f: thread.stop(wait=False) if _failed(f) else None)
        _THREADED.add(self)
        return Home(thread.loop, ready, thread)

    def call(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op()`` on the connection's loop and return its result (blocking)."""
        return self._started().call(op)

    async def acall(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op()`` on the connection's loop: natively when it is the caller's."""
        return await self._started().acall(op)

    # -- lifecycle ----------------------------------------------------------------

    def open(self) -> Self:
        """Open on a private loop thread (done on first use anyway)."""
        self._started().ready.result()
        return self

    async def aopen(self) -> Self:
        """Open on the running loop: async calls from it are then native."""
        loop = asyncio.get_running_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("this Fastpaca connection is closed")
            if self._home is not None and not self._home.inherited:
                raise RuntimeError("this Fastpaca connection is already open")
            self._home = Home(loop, ready)
        try:
            await self._open()
        except BaseException as exc:
            with self._lock:
                self._home = None
            ready.set_exception(exc)
            raise
        ready.set_result(None)
        return self

    def _take_home(self) -> Home | None:
        """The home to close (none when it was inherited through ``fork``)."""
        with self._lock:
            home, self._home, self._closed = self._home, None, True
        _THREADED.discard(self)
        return None if home is None or home.inherited else home

    async def _shutdown(self, home: Home) -> None:
        try:
            await asyncio.wrap_future(home.ready)
        except Exception:
            return  # never opened: nothing to release
        await self._close()

    def close(self) -> None:
        """Release the store or client; stop the private loop thread if there is one."""
        home = self._home
        if (
            home is not None
            and home.thread is None
            and not home.inherited
            and running_loop() is home.loop
        ):
            raise RuntimeError("this connection runs on this event loop: use `await aclose()`")
        home = self._take_home()
        if home is None:
            return
        if home.thread is not None and home.thread.current:  # e.g. a finalizer on that thread
            home.loop.create_task(self._shutdown(home)).add_done_callback(
                lambda _: home.thread.stop() if home.thread else None
            )
            return
        concurrent.futures.wait([home.ready])  # an opening in progress finishes first
        if _live(home):
            home.call(lambda: self._shutdown(home))
        if home.thread is not None:
            home.thread.stop()

    async def aclose(self) -> None:
        home = self._take_home()
        if home is None:
            return
        if running_loop() is home.loop:
            await self._shutdown(home)
        else:
            await asyncio.wait([asyncio.wrap_future(home.ready)])  # never raises
            if _live(home):
                await home.acall(lambda: self._shutdown(home))
        if home.thread is not None:
            home.thread.stop(wait=False)  # the thread ends by itself once its loop stops

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await self.aopen()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class EmbeddedConnection(Connection):
    """The core engine over a store in this process."""

    def __init__(self, url: str = DEFAULT_STORE_URL) -> None:
        super().__init__()
        self.url = url
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        return f"EmbeddedConnection({self.url!r})"

    @property
    def engine(self) -> Engine:
        """The engine (once open). Use it only on the connection's loop."""
        if self._engine is None:
            raise RuntimeError("the connection is not open")
        return self._engine

    async def _open(self) -> None:
        store = open_store(self.url)
        await store.open()
        self._engine = Engine(store)

    async def _close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.store.close()

    async def put_context(self, context_id: str, options: ContextOptions) -> None:
        await self.engine.put_context(
            context_id,
            token_budget=options.token_budget,
            trigger_ratio=options.trigger_ratio,
            policy=None if options.policy is None else dict(options.policy),
            metadata=None if options.metadata is None else dict(options.metadata),
        )

    async def append(self, context_id: str, messages: Sequence[StoredDict]) -> None:
        await self.engine.append_batch(context_id, list(messages))

    async def window(self, context_id: str, budget_tokens: int | None) -> list[StoredDict]:
        window = await self.engine.window(context_id, budget_tokens=budget_tokens)
        return [item.to_json() for item in window.items]

    async def messages(self, context_id: str, after_seq: int, limit: int) -> list[StoredDict]:
        rows = await self.engine.messages(context_id, after_seq, limit)
        return [row.to_json() for row in rows]

    async def compact(self, context_id: str, replacement: Sequence[StoredDict]) -> None:
        await self.engine.compact(context_id, list(replacement))

    async def delete(self, context_id: str) -> None:
        await self.engine.delete_context(context_id)


class RemoteConnection(Connection):
    """A Fastpaca server's HTTP API (``fastpaca serve``)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.base_url = base_url
        self._settings: dict[str, Any] = {
            "api_key": api_key,
            "timeout": timeout,
            "max_retries": max_retries,
            "transport": transport,
        }
        self._client: AsyncClient | None = None

    def __repr__(self) -> str:
        return f"RemoteConnection({self.base_url!r})"

    @property
    def client(self) -> AsyncClient:
        """The HTTP client (once open). Use it only on the connection's loop."""
        if self._client is None:
            raise RuntimeError("the connection is not open")
        return self._client

    def _context(self, context_id: str) -> AsyncContext:
        return AsyncContext(self.client, context_id)

    async def _open(self) -> None:
        self._client = AsyncClient(self.base_url, **self._settings)

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def put_context(self, context_id: str, options: ContextOptions) -> None:
        await self.client.context(
            context_id,
            budget=options.token_budget,
            trigger=options.trigger_ratio,
            policy=options.policy,
            metadata=options.metadata,
            create=True,
        )

    async def append(self, context_id: str, messages: Sequence[StoredDict]) -> None:
        await self._context(context_id).append_batch(messages)

    async def window(self, context_id: str, budget_tokens: int | None) -> list[StoredDict]:
        window = await self._context(context_id).context(budget_tokens=budget_tokens)
        return window.messages

    async def messages(self, context_id: str, after_seq: int, limit: int) -> list[StoredDict]:
        if isinstance(limit, int) and limit > _SERVER_PAGE:
            limit = _SERVER_PAGE  # a page may hold fewer: the caller pages on from its end
        page = await self._context(context_id).messages(after_seq=after_seq, limit=limit)
        return [dict(m) for m in page]

    async def compact(self, context_id: str, replacement: Sequence[StoredDict]) -> None:
        await self._context(context_id).compact(replacement)

    async def delete(self, context_id: str) -> None:
        await self._context(context_id).delete()


def connect(target: str | None = None, **options: Any) -> Connection:
    """A connection for ``target``: ``http(s)://...`` is a server, anything else a store URL.

    ``None`` is the default store, ``sqlite:///fastpaca.db``. ``options`` go to
    :class:`RemoteConnection` (``api_key``, ``timeout``...).
    """
    if target is not None and target.startswith(("http://", "https://")):
        return RemoteConnection(target, **options)
    if options:
        raise TypeError(f"unexpected options for an embedded store: {sorted(options)}")
    return EmbeddedConnection(target or DEFAULT_STORE_URL)
