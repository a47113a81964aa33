"""The store protocol: what every backend provides, and how one is chosen.

A backend offers a few reads and one way to write: :meth:`Store.run`, which
runs an *operation* (an async function of a :class:`Tx`) atomically on one
context. The operation reads the context row with :meth:`Tx.load_context`;
everything it writes commits together or not at all, and only if no other
write touched that context since the read (the backend locks the row, or checks
it at commit and runs the operation again). Operations never wait on anything
but their ``Tx``; a backend may run them again after a transient conflict, so
they must not have side effects outside it.

Order comes from the store (row locks and the ``(context_id, seq)`` key), so
several processes may share one database.

Leases (one summariser per context across processes) are taken and dropped by
operations too (:meth:`Tx.take_lease`), so they are as atomic as any write; a
lease whose holder stopped renewing it expires after its TTL.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from ..errors import ValidationError
from ..events import Event
from ..model import ContextRecord, StoredMessage, SummaryRecord

__all__ = [
    "IdempotencyRecord",
    "Op",
    "Store",
    "Tx",
    "open_store",
    "read_capped",
    "tenant_range",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    request_hash: str
    response: dict[str, Any]
    created_at: datetime


def tenant_range(tenant: str) -> tuple[str, str]:
    """``(low, high)``: a named tenant's ids are exactly ``low <= id < high``
    in code point (byte) order, as ``tenant/`` is their prefix and ``0``
    follows ``/``."""
    return f"{tenant}/", f"{tenant}0"


class Tx(Protocol):
    """One atomic unit of work on one context."""

    context_id: str

    async def load_context(self) -> ContextRecord | None:
        """Read the context row; no other write to it may commit between this read
        and the operation's own commit (a lock, or a check and a rerun)."""
        ...

    async def save_context(self, ctx: ContextRecord, *, created: bool) -> None: ...

    async def insert_messages(self, rows: list[StoredMessage]) -> None: ...

    async def read_messages(self, from_seq: int, to_seq: int) -> list[StoredMessage]: ...

    async def get_idempotency(self, key: str) -> IdempotencyRecord | None: ...

    async def put_idempotency(self, record: IdempotencyRecord) -> None: ...

    async def insert_event(self, event: Event) -> None: ...

    async def insert_summary(self, record: SummaryRecord) -> None: ...

    async def take_lease(self, holder: str, ttl: float) -> bool:
        """Hold this context's lease for ``ttl`` seconds from now.

        True when the lease was free, expired, or already ``holder``'s (renewal);
        False while another holder's lease is live.
        """
        ...

    async def drop_lease(self, holder: str) -> None:
        """Release the lease if ``holder`` holds it."""
        ...


Op = Callable[[Tx], Awaitable[T]]


class Store(abc.ABC):
    """A backend. Open it before use and close it after."""

    url: str

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the store answers; raise StoreUnavailable otherwise."""

    def use_alone_hint(self, alone: Callable[[], bool]) -> None:
        """A server's hint: ``alone()``, asked in the task that calls the store,
        is True when that task is the server's only request in progress. A store
        may work differently for such a caller (the SQLite store commits its
        write on the event loop instead of its writer thread); by default the
        hint is ignored."""
        del alone

    @abc.abstractmethod
    async def run(self, context_id: str, op: Op[T], *, reply_before_sync: bool = False) -> T:
        """Run ``op`` atomically on ``context_id``.

        ``reply_before_sync``: the caller answers its own client with the
        result and accepts it before the commit, where a backend can return it
        then without a later read or write in this process missing it (SQLite:
        the result comes as soon as the operation ran, the commit follows at
        once, and reads of the context in this process wait for it). A crash
        before that commit completes loses the write; a commit that fails then
        is logged, and the version the caller was given goes to the next
        write. Backends that cannot keep the order (another process may read
        the context next: PostgreSQL) ignore it and return after the commit,
        as always.
        """

    @abc.abstractmethod
    async def get_context(self, context_id: str) -> ContextRecord | None: ...

    @abc.abstractmethod
    async def list_contexts(
        self, limit: int, after: tuple[datetime, str] | None, tenant: str | None = None
    ) -> list[ContextRecord]:
        """Contexts by ``(updated_at, id)`` descending, strictly after ``after``.

        ``tenant``: ``None`` lists every context; ``""`` (the default tenant)
        only ids without ``/``; a name only ids in :func:`tenant_range`, read
        as a range of the id key, not a scan of every context.
        """

    @abc.abstractmethod
    async def read_messages(
        self, context_id: str, from_seq: int, to_seq: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        """Log rows with ``from_seq <= seq <= to_seq``, oldest first.

        ``max_bytes``: stop after the row that brings the rows' stored JSON
        (parts and metadata) to ``max_bytes`` or more, so at least one row
        comes back and at most ``max_bytes`` plus one row's worth (a large
        page read in parts, ``http/pages.py``)."""

    async def read_window(
        self, context_id: str, tail: int = 0
    ) -> tuple[ContextRecord | None, list[StoredMessage]]:
        """The context row and its live log rows (one consistent snapshot); with
        ``tail``, the rows from ``min(live_from_seq, last_seq - tail + 1)`` on.

        Log rows never change, so reading the row then its range is consistent;
        a backend may override this to do both in one trip. The rows may be
        shared with other reads (the durable stores keep them for the next
        read: ``stores/_rowcache.py``): treat them as immutable.
        """
        ctx = await self.get_context(context_id)
        if ctx is None:
            return None, []
        start = window_start(ctx, tail)
        if start > ctx.last_seq:
            return ctx, []
        return ctx, await self.read_messages(context_id, start, ctx.last_seq)

    @abc.abstractmethod
    async def read_events(self, context_id: str, after_version: int, limit: int) -> list[Event]:
        """Stored non-message events with ``version > after_version``, oldest first."""

    @abc.abstractmethod
    async def list_summaries(
        self, context_id: str, limit: int, before_version: int | None
    ) -> list[SummaryRecord]:
        """Summary records, newest first, with ``version < before_version`` when given."""

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def read_capped(
    store: Store, context_id: str, from_seq: int, to_seq: int, max_bytes: int | None
) -> list[StoredMessage]:
    """:meth:`Store.read_messages`, capped at ``max_bytes`` where the store takes
    the cap: a store written before the keyword existed (three arguments) reads
    the whole range, which its callers (pages, replay) take as one part."""
    if max_bytes is None or not _takes_max_bytes(type(store)):
        return await store.read_messages(context_id, from_seq, to_seq)
    return await store.read_messages(context_id, from_seq, to_seq, max_bytes)


_TAKES_MAX_BYTES: dict[type[Store], bool] = {}
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _takes_max_bytes(kind: type[Store]) -> bool:
    known = _TAKES_MAX_BYTES.get(kind)
    if known is None:
        try:
            params = inspect.signature(kind.read_messages).parameters.values()
        except (TypeError, ValueError):  # no signature to read: assume the current one
            known = True
        else:
            known = (
                any(
                    p.name == "max_bytes" or p.kind is inspect.Parameter.VAR_POSITIONAL
                    for p in params
                )
                or sum(p.kind in _POSITIONAL for p in params) >= 5
            )  # self and four
        _TAKES_MAX_BYTES[kind] = known
    return known


def window_start(ctx: ContextRecord, tail: int) -> int:
    """The first seq :meth:`Store.read_window` returns: the live range, widened
    to the newest ``tail`` rows."""
    if tail <= 0:
        return ctx.live_from_seq
    return max(1, min(ctx.live_from_seq, ctx.last_seq - tail + 1))


def open_store(url: str, *, timeout: float | None = None) -> Store:
    """A store for ``url``: ``memory://``, ``sqlite:///path``, ``postgresql://...``.

    Backends are imported lazily, so a driver is needed only when it is used.
    The store still has to be opened (``await store.open()`` or ``async with``).
    ``timeout``: the seconds a PostgreSQL operation, or an SQLite write waiting
    for another process's lock, may take before it raises ``StoreUnavailable``
    (the server's ``store_timeout``; unset: 3).
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(url)
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(url, timeout=timeout)
    if scheme in ("postgres", "postgresql"):
        from .postgres import PostgresStore

        return PostgresStore(url, timeout=timeout)
    raise ValidationError(
        "store", f"unknown store URL scheme {scheme!r}; use memory://, sqlite:/// or postgresql://"
    )
