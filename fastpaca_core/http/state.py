"""What the app holds, under typed ``web.AppKey``s (no module-level state)."""

from __future__ import annotations

from aiohttp import web

from ..engine import Engine
from ..settings import Settings
from ..summarizer import Summarizer
from .metrics import Metrics

__all__ = ["ENGINE", "METRICS", "SETTINGS", "STREAMS", "SUMMARIZER", "Streams"]


class Streams:
    """The open websocket streams of this process, bounded by ``limit``."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.open: set[web.WebSocketResponse] = set()
        self.closing = False
        self._metrics = metrics

    def full(self) -> bool:
        return len(self.open) >= self.limit

    def add(self, ws: web.WebSocketResponse) -> None:
        self.open.add(ws)
        self._metrics.websockets.set(len(self.open))

    def discard(self, ws: web.WebSocketResponse) -> None:
        self.open.discard(ws)
        self._metrics.websockets.set(len(self.open))


SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", Metrics)
STREAMS = web.AppKey("streams", Streams)
SUMMARIZER = web.AppKey("summarizer", Summarizer)
