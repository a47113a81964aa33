"""Prometheus metrics, in a registry of the app's own (no process globals).

- ``fastpaca_messages_appended_total`` and ``fastpaca_message_tokens`` (per
  message), ``fastpaca_compactions_total``: counted as this process's engine
  publishes its events (:class:`MeteredBus`), so events relayed from other
  processes are not counted twice;
- ``fastpaca_http_request_duration_seconds{route,method,status}``;
- ``fastpaca_store_operation_duration_seconds{operation}`` (:class:`TimedStore`);
- ``fastpaca_websockets_open``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..events import Event, EventBus, MessageData
from ..model import ContextRecord, StoredMessage, SummaryRecord
from ..stores.base import Op, Store

__all__ = ["MeteredBus", "Metrics", "TimedStore"]

T = TypeVar("T")

_TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The app's metrics and the registry that renders them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.appends = Counter(
            "fastpaca_messages_appended",
            "Messages appended to context logs by this process",
            registry=self.registry,
        )
        self.message_tokens = Histogram(
            "fastpaca_message_tokens",
            "Tokens per appended message",
            buckets=_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.compactions = Counter(
            "fastpaca_compactions",
            "Compactions (policy-triggered and manual) by this process",
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "fastpaca_http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store_latency = Histogram(
            "fastpaca_store_operation_duration_seconds",
            "Store operation latency",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.websockets = Gauge(
            "fastpaca_websockets_open", "Open websocket streams", registry=self.registry
        )
        # labelled children, looked up once (``labels()`` takes a lock and
        # validates its arguments on every call)
        self._requests: dict[tuple[str, str, int], Histogram] = {}
        self._store_ops: dict[str, Histogram] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.request_latency.labels(route, method, str(status))
        child.observe(seconds)

    def observe_store(self, operation: str, seconds: float) -> None:
        child = self._store_ops.get(operation)
        if child is None:
            child = self._store_ops[operation] = self.store_latency.labels(operation)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_events(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.type == "message":
                self.appends.inc()
                data = event.data
                if isinstance(data, MessageData):
                    self.message_tokens.observe(data.row.token_count)
            elif event.type == "compaction":
                self.compactions.inc()


class MeteredBus(EventBus):
    """An event bus that counts what this process's engine publishes."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def publish(self, events: Iterable[Event]) -> None:
        batch = list(events)
        self._metrics.observe_events(batch)
        super().publish(batch)

    def relay(self, events: Iterable[Event]) -> None:
        """Fan out events committed by another process (not counted here)."""
        super().publish(events)


class TimedStore(Store):
    """Wraps a store and times every call into it."""

    def __init__(self, inner: Store, metrics: Metrics) -> None:
        self.inner = inner
        self.url = inner.url
        self._metrics = metrics

    def _observe(self, operation: str, started: float) -> None:
        self._metrics.observe_store(operation, time.perf_counter() - started)

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        started = time.perf_counter()
        try:
            await self.inner.ping()
        finally:
            self._observe("ping", started)

    async def run(self, context_id: str, op: Op[T]) -> T:
        started = time.perf_counter()
        try:
            return await self.inner.run(context_id, op)
        finally:
            self._observe("run", started)

    async def get_context(self, context_id: str) -> ContextRecord | None:
        started = time.perf_counter()
        try:
            return await self.inner.get_context(context_id)
        finally:
            self._observe("get_context", started)

    async def list_contexts(
        self, limit: int, after: tuple[datetime, str] | None, tenant: str | None = None
    ) -> list[ContextRecord]:
        started = time.perf_counter()
        try:
            return await self.inner.list_contexts(limit, after, tenant)
        finally:
            self._observe("list_contexts", started)

    async def read_messages(
        self, context_id: str, from_seq: int, to_seq: int
    ) -> list[StoredMessage]:
        started = time.perf_counter()
        try:
            return await self.inner.read_messages(context_id, from_seq, to_seq)
        finally:
            self._observe("read_messages", started)

    async def read_window(
        self, context_id: str, tail: int = 0
    ) -> tuple[ContextRecord | None, list[StoredMessage]]:
        started = time.perf_counter()
        try:
            return await self.inner.read_window(context_id, tail)
        finally:
            self._observe("read_window", started)

    async def read_events(self, context_id: str, after_version: int, limit: int) -> list[Event]:
        started = time.perf_counter()
        try:
            return await self.inner.read_events(context_id, after_version, limit)
        finally:
            self._observe("read_events", started)

    async def list_summaries(
        self, context_id: str, limit: int, before_version: int | None
    ) -> list[SummaryRecord]:
        started = time.perf_counter()
        try:
            return await self.inner.list_summaries(context_id, limit, before_version)
        finally:
            self._observe("list_summaries", started)
