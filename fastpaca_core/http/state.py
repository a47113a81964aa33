"""What the app holds, under typed ``web.AppKey``s (no module-level state)."""

from __future__ import annotations

from aiohttp import web

from ..engine import Engine
from ..settings import Settings
from ..summarizer import Summarizer
from .metrics import Metrics

__all__ = ["ENGINE", "METRICS", "SETTINGS", "STREAMS", "SUMMARIZER", "Streams"]


class Streams:
    """The open websocket streams of this process, bounded by ``limit``.

    A stream takes its slot (:meth:`take`) before anything is awaited and gives
    it back (:meth:`give_back`) when it ends, so upgrades racing each other
    cannot all see a free slot while the first of them is still being set up.
    """

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.open: set[web.WebSocketResponse] = set()
        self.closing = False
        self._metrics = metrics
        self._taken = 0

    def full(self) -> bool:
        return self._taken >= self.limit

    def take(self) -> bool:
        """Take a slot; False when every slot is taken."""
        if self.full():
            return False
        self._taken += 1
        return True

    def give_back(self) -> None:
        self._taken -= 1

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
