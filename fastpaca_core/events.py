"""Change events and the in-process bus that fans them out.

The engine publishes one event per change once the store ran it: ``message``
(one per appended message), ``compaction``, ``tombstoned`` and ``config``. That
is after its commit, except for a write answered before it (SQLite,
``reply_before_sync``: the proxy's turns), whose events go out at once; should
that commit fail (a full disk), the events describe a write that is gone and
whose version the next write takes.
Websocket streams and cross-process fan-out subscribe here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import StoredMessage

__all__ = ["Event", "EventBus", "MessageData", "Subscription"]


class MessageData(Mapping[str, Any]):
    """A ``message`` event's data, ``{"seq", "message"}``, rendered on first use.

    Most appends have no stream listening; they should not pay for turning the
    stored row into JSON.
    """

    __slots__ = ("_data", "row")

    def __init__(self, row: StoredMessage) -> None:
        self.row = row
        self._data: dict[str, Any] | None = None

    def _render(self) -> dict[str, Any]:
        if self._data is None:
            self._data = {"seq": self.row.seq, "message": self.row.to_json()}
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._render()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._render())

    def __len__(self) -> int:
        return 2


@dataclass(frozen=True, slots=True)
class Event:
    context_id: str
    type: str
    version: int
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "version": self.version, **self.data}


class Subscription:
    """A queue of events for one context (or every context when ``None``)."""

    def __init__(self, bus: EventBus, context_id: str | None, maxsize: int) -> None:
        self._bus = bus
        self.context_id = context_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.overflowed = False

    def _offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # the consumer re-reads from the store

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[str | None, set[Subscription]] = {}

    def subscribe(self, context_id: str | None = None, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(self, context_id, maxsize)
        self._subs.setdefault(context_id, set()).add(sub)
        return sub

    def followed(self) -> list[str]:
        """The context ids that have a subscriber of their own now."""
        return [cid for cid in self._subs if cid is not None]

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.context_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.context_id]

    def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            for key in (event.context_id, None):
                for sub in tuple(self._subs.get(key, ())):
                    sub._offer(event)
