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
    """Linear in what it is fed: each byte is searched for a boundary once (and
    the last three again with the next chunk, as a boundary may straddle them),
    and an event's bytes are copied out once, however many chunks it came in."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # the buffer's bytes known to hold no boundary

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Complete events in ``chunk`` (with what was buffered before)."""
        buffer = self._buffer
        buffer += chunk
        events: list[SSEEvent] = []
        start = 0
        scan = max(0, self._scanned - 3)  # a boundary is at most 4 bytes
        while True:
            end, size = _boundary(buffer, scan)
            if end < 0:
                break
            scan = end + size
            events.append(_parse(bytes(buffer[start:scan])))
            start = scan
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        return events

    def rest(self) -> bytes:
        """Bytes of an incomplete event left at the end of the stream."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return rest


def _boundary(buffer: bytearray, start: int) -> tuple[int, int]:
    """The first event boundary at or after ``start``: its index and length."""
    found = [
        (i, len(sep))
        for sep in (b"\n\n", b"\r\n\r\n", b"\r\r")
        if (i := buffer.find(sep, start)) >= 0
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
