"""One event loop that owns a connection's resources, and how other threads reach it.

A store (SQLite writer task, Postgres pool) or an ``httpx.AsyncClient`` belongs
to the event loop it was opened on: its *home*. :class:`Home` runs coroutines
there from anywhere:

- from a thread with no running loop (sync LangChain calls): submit and wait;
- from the home loop itself: await directly (native async);
- from another loop: submit and await the result without blocking that loop.

The home is either the caller's loop (``aopen``) or a private loop in a daemon
thread started on first use (``open``, or any call before an explicit open).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Home", "LoopThread", "running_loop"]

T = TypeVar("T")


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _run(op: Callable[[], Awaitable[T]]) -> T:
    return await op()


class LoopThread:
    """An event loop running forever in a daemon thread, until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def current(self) -> bool:
        """True when called from this loop's own thread."""
        return threading.get_ident() == self._thread.ident

    def stop(self, wait: bool = True) -> None:
        """Stop the loop; with ``wait``, join the thread (unless called from it)."""
        with contextlib.suppress(RuntimeError):  # already closed
            self.loop.call_soon_threadsafe(self.loop.stop)
        if wait and not self.current:
            self._thread.join()


class Home:
    """The loop a connection lives on, with the future of its opening.

    ``pid`` is the process it was made in: a child made by ``fork`` inherits
    the home but not the thread running its loop (see :attr:`inherited`).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ready: concurrent.futures.Future[None],
        thread: LoopThread | None = None,
    ) -> None:
        self.loop = loop
        self.ready = ready
        self.thread = thread
        self.pid = os.getpid()

    @property
    def inherited(self) -> bool:
        """True in a child process made by ``fork``: the loop runs in the parent only."""
        return self.pid != os.getpid()

    def _check_reachable(self) -> None:
        if self.loop.is_closed() or not self.loop.is_running():
            raise RuntimeError(
                "the event loop this Fastpaca connection was opened on is no longer running; "
                "open connections with `async with` inside the loop that uses them"
            )

    def call(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op()`` on the home loop and wait for it (for sync callers)."""
        if running_loop() is self.loop:
            raise RuntimeError(
                "a blocking call on a Fastpaca connection from inside the event loop it "
                "runs on would deadlock: use the async methods (aget_messages, "
                "aadd_messages, aclear...) in async code"
            )
        self.ready.result()
        self._check_reachable()
        return asyncio.run_coroutine_threadsafe(_run(op), self.loop).result()

    async def acall(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op()`` on the home loop: directly when it is the caller's loop."""
        await asyncio.wrap_future(self.ready)
        if running_loop() is self.loop:
            return await op()
        self._check_reachable()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_run(op), self.loop))
