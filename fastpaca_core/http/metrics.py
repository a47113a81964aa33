"""Prometheus metrics, in a registry of the app's own (no process globals).

- ``fastpaca_messages_appended_total`` and ``fastpaca_message_tokens`` (per
  message), ``fastpaca_compactions_total``: counted as this process's engine
  publishes its events (:class:`MeteredBus`), so events relayed from other
  processes are not counted twice;
- ``fastpaca_http_request_duration_seconds{route,method,status}``;
- ``fastpaca_store_operation_duration_seconds{operation}`` (:class:`TimedStore`);
- ``fastpaca_websockets_open``.

Every append observes three histograms and a counter. prometheus_client's
``Histogram.observe`` takes locks and updates two values per call, a cost paid
on the event loop by every request; so these five metrics are accumulated by
hand (a count per bucket and a sum, no locks: all of them are observed on the
event loop) and turned into metric families only when ``/metrics`` is scraped
(:meth:`Metrics.collect`). The text is still rendered by prometheus_client and
is the same as its own ``Counter`` / ``Histogram`` would give, ``_created``
series included (``tests/http/test_metrics.py`` compares them).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TypeVar

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric, Sample
from prometheus_client.utils import floatToGoString

from ..events import Event, EventBus, MessageData
from ..model import ContextRecord, StoredMessage, SummaryRecord
from ..stores.base import Op, Store, read_capped

__all__ = ["MeteredBus", "Metrics", "TimedStore"]

T = TypeVar("T")

_TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# the ``method`` label's values; any other method a client sends counts as "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# how prometheus_client writes a float in a label (its ``Histogram``'s ``le``);
# untyped there
_go_float: Callable[[float], str] = floatToGoString


def _les(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The ``le`` label values of the buckets, ``+Inf`` last (as ``Histogram`` writes them)."""
    return (*(_go_float(bound) for bound in bounds), "+Inf")


_TOKEN_LES = _les(_TOKEN_BUCKETS)
_LATENCY_LES = _les(_LATENCY_BUCKETS)

_REQUEST_LABELS = ("route", "method", "status")
_STORE_LABELS = ("operation",)

# the metric families this module accumulates by hand, in the order they render
_Families = tuple[
    CounterMetricFamily,
    HistogramMetricFamily,
    CounterMetricFamily,
    HistogramMetricFamily,
    HistogramMetricFamily,
]


class _Series:
    """One histogram series: a count per bucket (not cumulative; the last one
    is ``+Inf``), the sum of the observed values, and when it was created.

    An observation of ``v`` is ``counts[bisect_left(bounds, v)] += 1; sum += v``:
    the buckets are upper bounds (``le``), so ``v`` belongs to the first one
    ``>= v``, and a value above the last bound to ``+Inf``.
    """

    __slots__ = ("counts", "created", "sum")

    def __init__(self, bounds: int) -> None:
        self.counts = [0] * (bounds + 1)
        self.sum = 0.0
        self.created = time.time()


def _created_series() -> bool:
    """Whether to write ``_created`` series: prometheus_client's own switch
    (``PROMETHEUS_DISABLE_CREATED_SERIES``, ``disable_created_metrics()``)."""
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


def _add_series(
    family: HistogramMetricFamily,
    names: tuple[str, ...],
    labels: tuple[str, ...],
    series: _Series,
    les: tuple[str, ...],
    created: bool,
) -> None:
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for le, count in zip(les, series.counts, strict=True):
        cumulative += count
        buckets.append((le, float(cumulative)))
    family.add_metric(labels, buckets, series.sum)
    if created:
        family.samples.append(
            Sample(family.name + "_created", dict(zip(names, labels, strict=True)), series.created)
        )


class Metrics:
    """The app's metrics and the registry that renders them.

    It is itself the registry's collector of the metrics accumulated by hand:
    ``appends`` and ``compactions`` (counts), ``message_tokens`` and the
    labelled request and store-operation latency series (:class:`_Series`).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.created = time.time()  # the unlabelled series are created with the app
        self.appends = 0
        self.compactions = 0
        self.message_tokens = _Series(len(_TOKEN_BUCKETS))
        self._requests: dict[tuple[str, str, int], _Series] = {}
        self._store_ops: dict[str, _Series] = {}
        self.registry.register(self)
        self.websockets = Gauge(
            "fastpaca_websockets_open", "Open websocket streams", registry=self.registry
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = "other"  # the client names the method: a label it cannot multiply
        key = (route, method, status)
        series = self._requests.get(key)
        if series is None:
            series = self._requests[key] = _Series(len(_LATENCY_BUCKETS))
        series.counts[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        series.sum += seconds

    def observe_store(self, operation: str, seconds: float) -> None:
        series = self._store_ops.get(operation)
        if series is None:
            series = self._store_ops[operation] = _Series(len(_LATENCY_BUCKETS))
        series.counts[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        series.sum += seconds

    def observe_events(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.type == "message":
                self.appends += 1
                data = event.data
                if isinstance(data, MessageData):
                    tokens = data.row.token_count
                    series = self.message_tokens
                    series.counts[bisect_left(_TOKEN_BUCKETS, tokens)] += 1
                    series.sum += tokens
            elif event.type == "compaction":
                self.compactions += 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def describe(self) -> _Families:
        """The hand-accumulated metric families, without samples (their names
        are what the registry checks for clashes)."""
        return (
            CounterMetricFamily(
                "fastpaca_messages_appended",
                "Messages appended to context logs by this process",
                labels=(),
            ),
            HistogramMetricFamily(
                "fastpaca_message_tokens", "Tokens per appended message", labels=()
            ),
            CounterMetricFamily(
                "fastpaca_compactions",
                "Compactions (policy-triggered and manual) by this process",
                labels=(),
            ),
            HistogramMetricFamily(
                "fastpaca_http_request_duration_seconds",
                "HTTP request latency by route, method and status",
                labels=_REQUEST_LABELS,
            ),
            HistogramMetricFamily(
                "fastpaca_store_operation_duration_seconds",
                "Store operation latency",
                labels=_STORE_LABELS,
            ),
        )

    def collect(self) -> Iterator[Metric]:
        """The hand-accumulated metric families with their samples (at scrape time)."""
        created = _created_series()
        appends, tokens, compactions, requests, store_ops = self.describe()
        since = self.created if created else None
        appends.add_metric((), float(self.appends), created=since)
        _add_series(tokens, (), (), self.message_tokens, _TOKEN_LES, created)
        compactions.add_metric((), float(self.compactions), created=since)
        for (route, method, status), series in self._requests.items():
            labels = (route, method, str(status))
            _add_series(requests, _REQUEST_LABELS, labels, series, _LATENCY_LES, created)
        for operation, series in self._store_ops.items():
            _add_series(store_ops, _STORE_LABELS, (operation,), series, _LATENCY_LES, created)
        yield from (appends, tokens, compactions, requests, store_ops)


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

    def use_alone_hint(self, alone: Callable[[], bool]) -> None:
        self.inner.use_alone_hint(alone)

    async def ping(self) -> None:
        started = time.perf_counter()
        try:
            await self.inner.ping()
        finally:
            self._observe("ping", started)

    async def run(self, context_id: str, op: Op[T], *, reply_before_sync: bool = False) -> T:
        started = time.perf_counter()
        try:
            return await self.inner.run(context_id, op, reply_before_sync=reply_before_sync)
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
        self, context_id: str, from_seq: int, to_seq: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        started = time.perf_counter()
        try:
            return await read_capped(self.inner, context_id, from_seq, to_seq, max_bytes)
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
