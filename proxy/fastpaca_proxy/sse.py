"""An incremental Server-Sent Events parser that keeps each event's raw bytes.

The proxy passes events to its client byte for byte as they complete, and reads
them on the side to assemble the reply.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    raw: bytes  # the event as received, blank-line terminator included
    event: str | None
    data: str


class SSEParser:
    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Complete events in ``chunk`` (with what was buffered before)."""
        self._buffer += chunk
        events: list[SSEEvent] = []
        while True:
            end, size = _boundary(self._buffer)
            if end < 0:
                return events
            raw = self._buffer[: end + size]
            self._buffer = self._buffer[end + size :]
            events.append(_parse(raw))

    def rest(self) -> bytes:
        """Bytes of an incomplete event left at the end of the stream."""
        rest, self._buffer = self._buffer, b""
        return rest


def _boundary(buffer: bytes) -> tuple[int, int]:
    found = [
        (i, len(sep)) for sep in (b"\n\n", b"\r\n\r\n", b"\r\r") if (i := buffer.find(sep)) >= 0
    ]
    return min(found) if found else (-1, 0)


def _parse(raw: bytes) -> SSEEvent:
    event: str | None = None
    data: list[str] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    return SSEEvent(raw, event, "\n".join(data))
