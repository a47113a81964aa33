"""An incremental Server-Sent Events parser that keeps each event's raw bytes.

The proxy passes events to its client byte for byte as they complete, and reads
them on the side to assemble the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser"]

# a blank line ends an event: one search finds the first of the three forms
# (three ``find`` calls would each scan to the end for the forms absent)
_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    raw: bytes  # the event as received, blank-line terminator included
    event: str | None
    data: str


class SSEParser:
    """Linear in what it is fed: each byte is searched for a boundary once (and
    the last three again with the next chunk, as a boundary may straddle them),
    however many events a chunk holds, and an event's bytes are copied out
    once, however many chunks it came in."""

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
    found = _BOUNDARY.search(buffer, start)
    return (-1, 0) if found is None else (found.start(), found.end() - found.start())


def _parse(raw: bytes) -> SSEEvent:
    event: str | None = None
    data: list[bytes] = []
    # split the bytes, not the text: only CR and LF end a line in SSE (as the
    # SDKs read it), while ``str.splitlines`` would also cut at U+2028, U+2029
    # or U+0085, which providers write unescaped inside their JSON strings
    for line in raw.splitlines():
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"data":
            data.append(value)
    return SSEEvent(raw, event, b"\n".join(data).decode("utf-8", "replace"))
