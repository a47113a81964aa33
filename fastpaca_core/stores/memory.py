"""``memory://``: everything in process memory; for tests and demos."""

from __future__ import annotations

import asyncio
import bisect
import copy
import time
from dataclasses import replace
from datetime import datetime

from ..events import Event
from ..jsonutil import dumps_str, loads
from ..model import ContextRecord, StoredMessage, SummaryRecord
from .base import IdempotencyRecord, Op, Store, T, tenant_range

__all__ = ["MemoryStore"]


def _copy(row: StoredMessage) -> StoredMessage:
    """``row`` sharing nothing with anyone: as a durable store's rows, written
    and read as JSON, the log holds what was appended, whatever its caller (or
    a reader) changes in its own objects later."""
    return replace(row, parts=loads(dumps_str(row.parts)), metadata=loads(dumps_str(row.metadata)))


class _MemoryTx:
    """Stages writes; they land in the store only when the operation succeeds."""

    def __init__(self, store: MemoryStore, context_id: str) -> None:
        self.context_id = context_id
        self._store = store
        self.ctx: ContextRecord | None = None
        self.rows: list[StoredMessage] = []
        self.keys: list[IdempotencyRecord] = []
        self.events: list[Event] = []
        self.summaries: list[SummaryRecord] = []
        self.lease: tuple[str, float] | None = None  # (holder, expires_at); "" drops
        self.lease_set = False

    async def load_context(self) -> ContextRecord | None:
        ctx = self._store._contexts.get(self.context_id)
        return copy.deepcopy(ctx)

    async def save_context(self, ctx: ContextRecord, *, created: bool) -> None:
        self.ctx = copy.deepcopy(ctx)

    async def insert_messages(self, rows: list[StoredMessage]) -> None:
        log = self._store._logs.get(self.context_id, [])
        next_seq = (self.rows[-1].seq if self.rows else len(log)) + 1
        for row in rows:
            if row.seq != next_seq:
                raise AssertionError(f"seq {row.seq} is not the next seq {next_seq}")
            next_seq += 1
        self.rows.extend(_copy(row) for row in rows)

    async def read_messages(self, from_seq: int, to_seq: int) -> list[StoredMessage]:
        log = self._store._logs.get(self.context_id, []) + self.rows
        return [_copy(row) for row in log[max(from_seq, 1) - 1 : max(to_seq, 0)]]

    async def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        return self._store._keys.get((self.context_id, key))

    async def put_idempotency(self, record: IdempotencyRecord) -> None:
        self.keys.append(record)

    async def insert_event(self, event: Event) -> None:
        self.events.append(event)

    async def insert_summary(self, record: SummaryRecord) -> None:
        self.summaries.append(record)

    def _current_lease(self) -> tuple[str, float] | None:
        if self.lease_set:
            return self.lease
        return self._store._leases.get(self.context_id)

    async def take_lease(self, holder: str, ttl: float) -> bool:
        now = time.time()
        current = self._current_lease()
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self.lease, self.lease_set = (holder, now + ttl), True
        return True

    async def drop_lease(self, holder: str) -> None:
        current = self._current_lease()
        if current is not None and current[0] == holder:
            self.lease, self.lease_set = None, True

    def commit(self) -> None:
        store = self._store
        if self.ctx is not None:
            store._contexts[self.context_id] = self.ctx
        store._logs.setdefault(self.context_id, []).extend(self.rows)
        for record in self.keys:
            store._keys[(self.context_id, record.key)] = record
        store._events.setdefault(self.context_id, []).extend(self.events)
        store._summaries.setdefault(self.context_id, []).extend(self.summaries)
        if self.lease_set:
            if self.lease is None:
                store._leases.pop(self.context_id, None)
            else:
                store._leases[self.context_id] = self.lease


class MemoryStore(Store):
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._contexts: dict[str, ContextRecord] = {}
        self._logs: dict[str, list[StoredMessage]] = {}
        self._keys: dict[tuple[str, str], IdempotencyRecord] = {}
        self._events: dict[str, list[Event]] = {}
        self._summaries: dict[str, list[SummaryRecord]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def run(self, context_id: str, op: Op[T], *, reply_before_sync: bool = False) -> T:
        del reply_before_sync  # nothing reaches a disk
        lock = self._locks.setdefault(context_id, asyncio.Lock())
        async with lock:
            tx = _MemoryTx(self, context_id)
            result = await op(tx)
            tx.commit()
            return result

    async def get_context(self, context_id: str) -> ContextRecord | None:
        return copy.deepcopy(self._contexts.get(context_id))

    async def list_contexts(
        self, limit: int, after: tuple[datetime, str] | None, tenant: str | None = None
    ) -> list[ContextRecord]:
        contexts = list(self._contexts.values())
        if tenant == "":
            contexts = [c for c in contexts if "/" not in c.id]
        elif tenant is not None:
            low, high = tenant_range(tenant)
            contexts = [c for c in contexts if low <= c.id < high]
        ordered = sorted(contexts, key=lambda c: (c.updated_at, c.id), reverse=True)
        if after is not None:
            ordered = [c for c in ordered if (c.updated_at, c.id) < after]
        return [copy.deepcopy(c) for c in ordered[:limit]]

    async def read_messages(
        self, context_id: str, from_seq: int, to_seq: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        log = self._logs.get(context_id, [])
        rows = log[max(from_seq, 1) - 1 : max(to_seq, 0)]
        if max_bytes is None:
            return [_copy(row) for row in rows]
        size = 0
        for count, row in enumerate(rows, 1):  # the same JSON the durable stores hold
            size += len(dumps_str(row.parts)) + len(dumps_str(row.metadata))
            if size >= max_bytes:
                return [_copy(row) for row in rows[:count]]
        return [_copy(row) for row in rows]

    async def read_events(self, context_id: str, after_version: int, limit: int) -> list[Event]:
        events = self._events.get(context_id, [])
        start = bisect.bisect_right([e.version for e in events], after_version)
        return events[start : start + limit]

    async def list_summaries(
        self, context_id: str, limit: int, before_version: int | None
    ) -> list[SummaryRecord]:
        records = self._summaries.get(context_id, [])
        if before_version is not None:
            records = [r for r in records if r.version < before_version]
        return sorted(records, key=lambda r: r.version, reverse=True)[:limit]
