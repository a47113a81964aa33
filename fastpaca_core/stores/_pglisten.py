"""The PostgreSQL store's change hints: NOTIFY sent after commit, LISTEN that comes back.

:class:`Notifier` sends the hints ``token|version|context id`` for this
process's commits, coalesced: at most one ``pg_notify`` statement in flight,
carrying every context written since the previous one (its latest version),
several hints a payload, one per line. It runs after the commit, not inside
the transaction: a transaction that has notified takes a database-wide lock at
commit and holds it until the commit is durable, which serialises every
notifying commit (measured: ~610 commits/s with NOTIFY in the transaction
against ~2,000 without, ``python -m bench pg_notify``). The price: a hint is
not atomic with its commit. A process killed between the two (a few ms), or a
database lost right after a commit, leaves the other processes' streams of
that context without a hint until its next change (whose hint makes them
catch up from the store) or their next ping (each compares its version with
the store's); a lost database also drops every listener's connection, and a
listener that reconnects resyncs what it follows. Hints whose statement
fails are sent again (:class:`Notifier`).

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
from collections.abc import Awaitable, Callable, Iterator

import asyncpg

from ..errors import FastpacaError, StoreUnavailable

__all__ = ["FAILED", "UNAVAILABLE", "Listener", "Notifier", "parse_hints"]

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
_NOTIFY_DELAY = 0.002  # seconds a hint waits for others to share its statement
_PAYLOAD_MAX = 7_000  # bytes of hints per NOTIFY (PostgreSQL's limit is 8,000)


def parse_hints(payload: str) -> Iterator[tuple[str, str, int]]:
    """``(token, context id, version)`` for each well-formed line of ``payload``."""
    for line in payload.split("\n"):
        token, _, rest = line.partition("|")
        version, _, context_id = rest.partition("|")
        if version.isdigit() and context_id:
            yield token, context_id, int(version)


class Notifier:
    """This process's hints, sent after their commits, coalesced (see the module doc).

    ``send(payloads)`` sends each payload with one statement. Hints that fail
    to go (a connection lost under them, the database away for a moment) are
    kept, merged with the newer ones, and sent again with backoff: a hint is
    harmless twice (its receivers catch up to what is committed), but a
    stream that never hears it stays behind until its next check
    (``http/stream.py``). :meth:`stop` gives up on what is still unsent.
    """

    def __init__(self, send: Callable[[list[str]], Awaitable[None]], token: str) -> None:
        self._send = send
        self._token = token
        self._pending: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, context_id: str, version: int) -> None:
        if self._pending.get(context_id, -1) < version:
            self._pending[context_id] = version
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="fastpaca-pg-notify"
            )

    def _payloads(self, pending: dict[str, int]) -> list[str]:
        payloads: list[str] = []
        lines: list[str] = []
        size = 0
        for context_id, version in pending.items():
            line = f"{self._token}|{version}|{context_id}"
            if lines and size + len(line) + 1 > _PAYLOAD_MAX:
                payloads.append("\n".join(lines))
                lines, size = [], 0
            lines.append(line)
            size += len(line) + 1
        if lines:
            payloads.append("\n".join(lines))
        return payloads

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        try:
            while self._pending:
                await asyncio.sleep(_NOTIFY_DELAY)
                pending, self._pending = self._pending, {}
                try:
                    await self._send(self._payloads(pending))
                except FastpacaError as exc:  # the writes committed all the same: send again
                    log.warning(
                        "could not send change hints; sending them again",
                        extra={"fields": {"error": str(exc), "retry_in_s": backoff}},
                    )
                    for context_id, version in pending.items():
                        if self._pending.get(context_id, -1) < version:
                            self._pending[context_id] = version
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                else:
                    backoff = _BACKOFF_FIRST
        finally:
            self._task = None

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) for the hints already added to be sent."""
        task = self._task
        if task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout)

    async def stop(self, timeout: float) -> None:
        """:meth:`drain`, then stop sending (hints that could not go are dropped)."""
        await self.drain(timeout)
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._pending.clear()


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
