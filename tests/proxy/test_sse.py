"""The proxy's SSE parser: the same events however the stream is cut into chunks."""

from __future__ import annotations

import random

from fastpaca_proxy.sse import SSEParser

STREAM = (
    b": a comment\n\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: line one\ndata: line two\r\n\r\n"
    b"data: cr only\r\r"
    b"event: delta\ndata:no space\n\n"
    b"data: " + b"x" * 5000 + b"\n\n"
    b"data: unfinished"
)


def _events(chunks: list[bytes]) -> tuple[list[tuple[bytes, str | None, str]], bytes]:
    parser = SSEParser()
    events = [(e.raw, e.event, e.data) for chunk in chunks for e in parser.feed(chunk)]
    return events, parser.rest()


def test_events_keep_their_bytes_and_fields() -> None:
    events, rest = _events([STREAM])
    assert [raw for raw, _, _ in events] + [rest] == [
        b": a comment\n\n",
        b'event: message_start\ndata: {"a": 1}\n\n',
        b"data: line one\ndata: line two\r\n\r\n",
        b"data: cr only\r\r",
        b"event: delta\ndata:no space\n\n",
        b"data: " + b"x" * 5000 + b"\n\n",
        b"data: unfinished",
    ]
    assert [(event, data[:12]) for _, event, data in events] == [
        (None, ""),
        ("message_start", '{"a": 1}'),
        (None, "line one\nlin"),
        (None, "cr only"),
        ("delta", "no space"),
        (None, "xxxxxxxxxxxx"),
    ]


def test_any_cut_into_chunks_gives_the_same_events() -> None:
    whole = _events([STREAM])
    for size in (1, 2, 3, 4, 7):  # boundaries straddling chunks at every offset
        chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
        assert _events(chunks) == whole
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 40)))
        chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
        assert _events(chunks) == whole


def test_one_large_event_in_many_chunks() -> None:
    parser = SSEParser()
    body = b"data: " + b"y" * 200_000 + b"\n\n"
    pieces = [body[i : i + 4096] for i in range(0, len(body), 4096)]
    out = [e for piece in pieces for e in parser.feed(piece)]
    assert [e.raw for e in out] == [body] and parser.rest() == b""
