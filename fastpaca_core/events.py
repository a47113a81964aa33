"""Change events and the in-process bus that fans them out.

The engine publishes one event per change once the store ran it: ``message``
(one per appended message), ``compaction``, ``tombstoned`` and ``config``. That
is after its commit, except for a write answered before it (SQLite,
``reply_before_sync``: the proxy's turns), whose events go out at once; should
that commit fail (a full disk), the events describe a write that is gone and
whose version the next write takes.
Websocket streams and cross-process fan-out subscribe here.

A subscription buffers at most ``maxsize`` events and about ``max_bytes``
bytes of them (:data:`MAX_QUEUED_BYTES`, at least one event whatever its
size); past either bound it drops what it holds and sets ``overflowed``, and
its consumer reads what it missed back from the store. Sizes are estimates
(:func:`approx_size`, string lengths plus a little per item, once per event
whatever the subscribers) taken only for an event that has to wait behind
another: single appends to a consumer that keeps up are never measured.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import StoredMessage

__all__ = [
    "MAX_QUEUED_BYTES",
    "MAX_QUEUED_EVENTS",
    "Event",
    "EventBus",
    "MessageData",
    "Subscription",
    "approx_size",
]

MAX_QUEUED_EVENTS = 10_000
# about the largest REST batch (``max_body_bytes``), twice over
MAX_QUEUED_BYTES = 2 * 1024 * 1024
_ROW_OVERHEAD = 160  # a message event's fixed fields: seq, role, token_count, inserted_at...
_MAPPINGS = (dict, Mapping)  # the concrete type first: the abstract check is slow
_SEQUENCES = (list, tuple)


def approx_size(value: object) -> int:
    """Roughly the length of ``value`` as JSON: string lengths plus a little per item.

    A walk over the items, not an encoding (iterative: no depth limit).
    """
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, _MAPPINGS):
            size += 2
            for key, child in item.items():
                size += len(key) + 4 if isinstance(key, str) else 8
                if isinstance(child, str):  # the common leaf, without a trip through the stack
                    size += len(child) + 2
                else:
                    stack.append(child)
        elif isinstance(item, _SEQUENCES):
            size += 2 + len(item)
            stack.extend(item)
        else:
            size += 8
    return size


class MessageData(Mapping[str, Any]):
    """A ``message`` event's data, ``{"seq", "message"}``, rendered on first use.

    Most appends have no stream listening; they should not pay for turning the
    stored row into JSON.
    """

    __slots__ = ("_data", "_size", "row")

    def __init__(self, row: StoredMessage) -> None:
        self.row = row
        self._data: dict[str, Any] | None = None
        self._size = -1

    def approx_size(self) -> int:
        """About the bytes of the event as JSON; measured once, shared by every subscriber."""
        if self._size < 0:
            row = self.row
            self._size = _ROW_OVERHEAD + approx_size(row.parts) + approx_size(row.metadata)
        return self._size

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

    def approx_size(self) -> int:
        """About the bytes of the event as JSON (see :func:`approx_size`)."""
        data = self.data
        if isinstance(data, MessageData):
            return data.approx_size()
        return 32 + approx_size(data)


class Subscription:
    """A queue of events for one context (or every context when ``None``).

    Read it with :meth:`get`, :meth:`get_nowait` and :meth:`empty`, which keep
    the count of buffered bytes. Past ``maxsize`` events or about ``max_bytes``
    bytes it drops every event it holds but the newest and sets
    ``overflowed``: the consumer (woken by that event if it was waiting)
    clears the flag, then reads what it missed from the store.
    """

    def __init__(self, bus: EventBus, context_id: str | None, maxsize: int, max_bytes: int) -> None:
        self._bus = bus
        self.context_id = context_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.max_bytes = max_bytes
        self.overflowed = False
        self.buffered_bytes = 0  # the estimated bytes of the queued events
        self._sizes: deque[int] = deque()  # each queued event's estimate, in queue order

    def _offer(self, event: Event) -> None:
        queue = self.queue
        # an event that waits behind nothing is not measured: a consumer that
        # keeps up pays for no estimate, and one event of any size always fits
        size = 0 if queue.empty() else event.approx_size()
        if size and self.buffered_bytes + size > self.max_bytes:
            self._overflow(event)
            return
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            self._overflow(event)
            return
        self._sizes.append(size)
        self.buffered_bytes += size

    def _overflow(self, newest: Event) -> None:
        """Drop every buffered event but ``newest``, which is kept (unmeasured,
        as the only one) so that a consumer waiting in :meth:`get` wakes up: it
        re-reads the dropped ones from the store."""
        self.overflowed = True
        queue = self.queue
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(newest)
        self._sizes.clear()
        self._sizes.append(0)
        self.buffered_bytes = 0

    def _taken(self) -> None:
        if self._sizes:
            self.buffered_bytes -= self._sizes.popleft()

    async def get(self) -> Event:
        event = await self.queue.get()
        self._taken()
        return event

    def get_nowait(self) -> Event:
        """The next event; raises ``asyncio.QueueEmpty`` when there is none."""
        event = self.queue.get_nowait()
        self._taken()
        return event

    def empty(self) -> bool:
        return self.queue.empty()

    def close(self) -> None:
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[str | None, set[Subscription]] = {}

    def subscribe(
        self,
        context_id: str | None = None,
        maxsize: int = MAX_QUEUED_EVENTS,
        max_bytes: int = MAX_QUEUED_BYTES,
    ) -> Subscription:
        sub = Subscription(self, context_id, maxsize, max_bytes)
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
