"""Second look at files counted by what providers bill: a big file's bytes are
read off the event loop, and an image known only by its data URL's type
counts as an image."""

from __future__ import annotations

import base64
import threading
from typing import Any

from fastpaca_core.mediatokens import IMAGE_TOKENS
from fastpaca_core.model import Message
from fastpaca_core.tokens import TokenCounter


def _file(media: str, data: bytes, **extra: Any) -> Message:
    url = f"data:{media};base64," + base64.b64encode(data).decode()
    return Message("user", [{"type": "file", "url": url, **extra}])


async def test_a_big_files_bytes_are_read_off_the_event_loop(readers: list[str]) -> None:
    """Counting moves off the loop above ``_INLINE_CHARS`` of pieces; with the
    URL no longer a piece, a large PDF's base64 decode and page scan (~90 ms
    for 20 MB) ran on the loop, stalling every other request."""
    loop_thread = threading.current_thread().name
    pdf = b"%PDF-1.7\n" + b"1 0 obj << /Type /Page >> endobj\n" + bytes(200_000)
    counter = TokenCounter()
    for media in ("application/pdf", "audio/mpeg", "text/plain", "application/zip"):
        for cache_size in (0, 100):
            counter = TokenCounter(cache_size=cache_size)
            message = _file(media, pdf, mediaType=media)
            readers.clear()
            fresh = await counter.acount_fresh([message])
            counted = await counter.count_messages([message])
            assert readers and loop_thread not in readers, (media, readers)
            assert fresh == counted == [counter.count_fresh(message)]
    # a small file is still read where it is counted: no hand-off
    readers.clear()
    await counter.count_messages([_file("application/pdf", pdf[:200], mediaType="application/pdf")])
    assert readers == [loop_thread]


def test_an_image_named_only_by_its_data_url_counts_as_an_image() -> None:
    """A part with no ``mediaType`` (or ``application/octet-stream``) takes its
    URL's type; an ``image/*`` one was counted at a token per 4 bytes: a 200 KB
    photo as ~50,000 tokens."""
    counter = TokenCounter()
    photo = bytes(range(256)) * 800
    for extra in ({}, {"mediaType": "application/octet-stream"}):
        message = _file("image/png", photo, **extra)
        count = counter.count_fresh(message)
        assert IMAGE_TOKENS <= count < IMAGE_TOKENS + 40, (extra, count)
        assert counter.at_most(message) >= count
