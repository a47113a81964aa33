"""``/metrics``: the hand-accumulated metrics render as prometheus_client's own would.

:class:`Metrics` keeps counts and sums itself (the observations are on every
request's path) and builds the metric families at scrape time. A reference
registry of prometheus_client ``Counter`` / ``Histogram`` / ``Gauge`` with the
same names, help texts, labels and buckets is fed the same observations; the
two renderings must be the same text, but for the ``_created`` timestamps.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import prometheus_client.metrics
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from fastpaca_core.events import Event, MessageData
from fastpaca_core.http.metrics import Metrics
from fastpaca_core.model import StoredMessage

TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

MESSAGES = "/v1/contexts/{id}/messages"
# bucket bounds themselves, values just above them, zero, above the last bound
REQUESTS = [
    *((MESSAGES, "POST", 201, s) for s in (0.0, 0.0005, 0.001, 0.0011, 0.0025, 0.3, 1.0, 5.0)),
    (MESSAGES, "POST", 201, 5.0001),
    ("/v1/contexts/{id}", "GET", 404, 0.002),
    ("/metrics", "GET", 200, 0.01),
    (MESSAGES, "POST", 201, 42.0),
    (MESSAGES, "POST", 409, 0.004),
    ("unmatched", "GET", 404, 0.00001),
]
STORE_OPS = [
    ("run", 0.0001),
    ("run", 0.05),
    ("read_window", 0.25),
    ("ping", 7.0),
    ("run", 0.1),
    ("get_context", 0.0025),
]
TOKENS = [0, 7, 8, 9, 16, 17, 300, 16384, 65536, 65537]


def message(tokens: int) -> Event:
    row = StoredMessage(1, "user", [], {}, tokens, tokens, 1, datetime.now(UTC))
    return Event("ctx", "message", 1, MessageData(row))


EVENTS = [
    [message(t) for t in TOKENS[:4]],
    [Event("ctx", "message", 2, {"seq": 2})],  # counted, but no row to count tokens of
    [Event("ctx", "compaction", 3), Event("ctx", "config", 4), message(TOKENS[4])],
    [message(t) for t in TOKENS[5:]],
    [Event("ctx", "compaction", 5), Event("ctx", "remote", 6)],
]


@dataclass
class Reference:
    """The metrics as prometheus_client's own classes would keep them."""

    registry: CollectorRegistry
    appends: Counter
    message_tokens: Histogram
    compactions: Counter
    request_latency: Histogram
    store_latency: Histogram
    websockets: Gauge

    @classmethod
    def create(cls) -> Reference:
        registry = CollectorRegistry(auto_describe=True)
        return cls(
            registry,
            Counter(
                "fastpaca_messages_appended",
                "Messages appended to context logs by this process",
                registry=registry,
            ),
            Histogram(
                "fastpaca_message_tokens",
                "Tokens per appended message",
                buckets=TOKEN_BUCKETS,
                registry=registry,
            ),
            Counter(
                "fastpaca_compactions",
                "Compactions (policy-triggered and manual) by this process",
                registry=registry,
            ),
            Histogram(
                "fastpaca_http_request_duration_seconds",
                "HTTP request latency by route, method and status",
                ["route", "method", "status"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            Histogram(
                "fastpaca_store_operation_duration_seconds",
                "Store operation latency",
                ["operation"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            Gauge("fastpaca_websockets_open", "Open websocket streams", registry=registry),
        )

    def observe_events(self, events: list[Event]) -> None:
        for event in events:
            if event.type == "message":
                self.appends.inc()
                if isinstance(event.data, MessageData):
                    self.message_tokens.observe(event.data.row.token_count)
            elif event.type == "compaction":
                self.compactions.inc()


CREATED = re.compile(r"^(\w+_created(?:\{.*\})?) (\S+)$", re.M)


def without_created_values(text: str) -> str:
    return CREATED.sub(r"\1 <created>", text)


def created_values(text: str) -> dict[str, float]:
    return {series: float(value) for series, value in CREATED.findall(text)}


@pytest.mark.parametrize("created_series", [True, False], ids=["created", "no-created"])
def test_metrics_render_like_prometheus_client(
    created_series: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prometheus_client's switch (PROMETHEUS_DISABLE_CREATED_SERIES) holds for both
    monkeypatch.setattr(prometheus_client.metrics, "_use_created", created_series)
    started = time.time()
    metrics, reference = Metrics(), Reference.create()
    text = metrics.render().decode()
    assert without_created_values(text) == without_created_values(
        generate_latest(reference.registry).decode()
    )

    for route, method, status, seconds in REQUESTS:
        metrics.observe_request(route, method, status, seconds)
        reference.request_latency.labels(route, method, str(status)).observe(seconds)
    for operation, seconds in STORE_OPS:
        metrics.observe_store(operation, seconds)
        reference.store_latency.labels(operation).observe(seconds)
    for batch in EVENTS:
        metrics.observe_events(batch)
        reference.observe_events(batch)
    metrics.websockets.set(3)
    reference.websockets.set(3)

    text = metrics.render().decode()
    assert without_created_values(text) == without_created_values(
        generate_latest(reference.registry).decode()
    )
    # a few lines spelled out, should the reference itself drift
    assert "fastpaca_messages_appended_total 11.0\n" in text
    assert "fastpaca_compactions_total 2.0\n" in text
    assert 'fastpaca_message_tokens_bucket{le="8.0"} 3.0\n' in text
    assert 'fastpaca_message_tokens_bucket{le="65536.0"} 9.0\n' in text
    assert 'fastpaca_message_tokens_bucket{le="+Inf"} 10.0\n' in text
    assert f"fastpaca_message_tokens_sum {float(sum(TOKENS))}\n" in text
    posts = 'method="POST",route="/v1/contexts/{id}/messages",status="201"'
    assert f'fastpaca_http_request_duration_seconds_bucket{{le="0.001",{posts}}} 3.0\n' in text
    assert f'fastpaca_http_request_duration_seconds_bucket{{le="5.0",{posts}}} 8.0\n' in text
    assert f'fastpaca_http_request_duration_seconds_bucket{{le="+Inf",{posts}}} 10.0\n' in text
    assert f"fastpaca_http_request_duration_seconds_count{{{posts}}} 10.0\n" in text
    assert 'fastpaca_store_operation_duration_seconds_count{operation="run"} 3.0\n' in text
    assert "fastpaca_websockets_open 3.0\n" in text

    created = created_values(text)
    if not created_series:
        assert created == {}
        return
    # every counter and histogram series has one, from when it was created
    assert len(created) == 3 + len({r[:3] for r in REQUESTS}) + len({s[0] for s in STORE_OPS})
    assert all(started <= value <= time.time() for value in created.values())
    assert f"fastpaca_http_request_duration_seconds_created{{{posts}}}" in created
