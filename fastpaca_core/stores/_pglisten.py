"""The PostgreSQL store's LISTEN connection, which comes back by itself.

:class:`Listener` holds one dedicated connection with ``LISTEN`` on a channel.
When that connection is lost (the server restarted, a failover moved the
primary, the network dropped it) or stops answering its periodic check, it
reconnects with backoff, to whichever host the URL's ``target_session_attrs``
picks, and says so through ``on_reconnect``: notifications sent while it was
away are gone, so a listener that must not miss changes re-reads then.

``UNAVAILABLE`` is the one list of asyncpg / socket errors that mean "the
database cannot be reached", shared with :mod:`.postgres`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from ..errors import StoreUnavailable

__all__ = ["FAILED", "UNAVAILABLE", "Listener"]

log = logging.getLogger("fastpaca.store")

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or command timeout
    asyncpg.PostgresConnectionError,  # 08xxx: connection does not exist, failure
    asyncpg.InterfaceError,  # the connection is closed / was lost mid-operation
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: admin / crash shutdown
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: talking to a standby
    asyncpg.exceptions.TargetServerAttributeNotMatched,  # no host is read-write (yet)
    asyncpg.exceptions.InternalClientError,  # a protocol state broken by a lost server
)

# the above, or any error the server sends
FAILED: tuple[type[BaseException], ...] = (*UNAVAILABLE, asyncpg.PostgresError)

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 2.0


class Listener:
    """``LISTEN channel`` on a connection of its own, reconnected when lost."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_notify: Callable[[str], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        timeout: float,
        check_interval: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._timeout = timeout
        self._check_interval = check_interval
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    async def start(self) -> None:
        """Connect and listen; raises :class:`StoreUnavailable` when that fails."""
        try:
            self._conn = await self._connect()
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot listen on PostgreSQL: {exc}") from exc
        self._task = asyncio.create_task(self._keep(), name="fastpaca-pg-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), self._timeout)
            except FAILED:
                conn.terminate()

    def _notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        self._on_notify(str(payload))

    def _terminated(self, conn: object) -> None:
        self._lost.set()

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
        try:
            await conn.add_listener(self._channel, self._notify)
        except BaseException:
            conn.terminate()
            raise
        self._lost = asyncio.Event()
        conn.add_termination_listener(self._terminated)
        return conn

    async def _healthy(self, conn: asyncpg.Connection) -> bool:
        """The connection answers, and on a primary (a standby hears no NOTIFY)."""
        try:
            in_recovery = await conn.fetchval("SELECT pg_is_in_recovery()", timeout=self._timeout)
        except FAILED:
            return False
        return in_recovery is False

    async def _keep(self) -> None:
        while True:
            conn = self._conn
            assert conn is not None
            while not conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), self._check_interval)
                    break
                if not await self._healthy(conn):
                    break
            conn.terminate()
            log.warning("LISTEN connection lost; reconnecting")
            self._conn = await self._reconnect()
            self.reconnects += 1
            log.info("LISTEN connection back", extra={"fields": {"reconnects": self.reconnects}})
            if self._on_reconnect is not None:
                self._on_reconnect()

    async def _reconnect(self) -> asyncpg.Connection:
        delay = _BACKOFF_FIRST
        while True:
            try:
                return await self._connect()
            except FAILED as exc:
                log.debug("LISTEN reconnect failed", extra={"fields": {"error": str(exc)}})
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)
