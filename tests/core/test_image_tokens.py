"""Files count by what providers bill for them (images, audio, PDFs), not by their bytes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpaca_core.mediatokens import (
    AUDIO_BYTES_PER_SECOND,
    AUDIO_TOKENS_PER_SECOND,
    OTHER_BYTES_PER_TOKEN,
    PDF_BYTES_PER_PAGE,
    PDF_PAGE_TOKENS,
)
from fastpaca_core.model import Message
from fastpaca_core.tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD, TokenCounter


def _photo(size: int) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(bytes(range(256)) * (size // 256)).decode()


def test_a_photo_counts_as_an_image_not_as_its_base64() -> None:
    counter = TokenCounter()
    small = Message("user", [{"type": "file", "mediaType": "image/jpeg", "url": _photo(1024)}])
    large = Message("user", [{"type": "file", "mediaType": "image/jpeg", "url": _photo(200_000)}])
    assert counter.count_fresh(large) == counter.count_fresh(small)
    assert IMAGE_TOKENS < counter.count_fresh(large) < IMAGE_TOKENS + 20


def test_an_image_by_url_or_file_id_counts_the_same() -> None:
    counter = TokenCounter()
    by_url = Message("user", [{"type": "file", "mediaType": "image/*", "url": "https://x/y.png"}])
    assert counter.count_fresh(by_url) >= IMAGE_TOKENS + MESSAGE_OVERHEAD


def test_a_screenshot_a_tool_returned_counts_as_an_image() -> None:
    """A tool result whose output holds an image (computer use, a LangChain
    ``ToolMessage`` with an image block) counts it as one, not as its base64."""
    counter = TokenCounter()
    shot = {"type": "file", "mediaType": "image/png", "url": _photo(60_000)}
    result = {
        "type": "tool-result",
        "toolCallId": "c1",
        "toolName": "screenshot",
        "output": [{"type": "text", "text": "the screen"}, shot],
    }
    message = Message("tool", [result])
    count = counter.count_fresh(message)
    assert IMAGE_TOKENS < count < IMAGE_TOKENS + 60
    assert counter.at_most(message) >= count
    assert counter.count_message(message) == count


def _file(media: str, data: bytes) -> Message:
    url = f"data:{media};base64," + base64.b64encode(data).decode()
    return Message("user", [{"type": "file", "mediaType": media, "url": url}])


def _wav(seconds: float, rate: int = 16_000) -> bytes:
    frames = int(seconds * rate) * 2  # 16-bit mono
    byte_rate = rate * 2
    header = (
        b"RIFF"
        + (36 + frames).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")  # PCM
        + (1).to_bytes(2, "little")  # mono
        + rate.to_bytes(4, "little")
        + byte_rate.to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + frames.to_bytes(4, "little")
    )
    return header + bytes(range(256)) * (frames // 256) + bytes(frames % 256)


def test_audio_counts_by_its_length_not_by_its_base64() -> None:
    """Three seconds of speech (96 KB of WAV) counted as ~90,000 tokens of
    base64 text: one such message pushed the conversation out of the window.
    OpenAI bills it as ~30."""
    counter = TokenCounter()
    three = counter.count_fresh(_file("audio/wav", _wav(3.0)))
    assert 3 * AUDIO_TOKENS_PER_SECOND <= three < 3 * AUDIO_TOKENS_PER_SECOND + 30
    # another rate: the header says how long it is
    assert counter.count_fresh(_file("audio/wav", _wav(3.0, rate=48_000))) == three
    mp3 = bytes(range(256)) * (5 * AUDIO_BYTES_PER_SECOND // 256)  # five seconds at 128 kbit/s
    count = counter.count_fresh(_file("audio/mpeg", mp3))
    assert 5 * AUDIO_TOKENS_PER_SECOND <= count < 5 * AUDIO_TOKENS_PER_SECOND + 30


def test_a_pdf_counts_by_its_pages() -> None:
    counter = TokenCounter()
    page = b"1 0 obj << /Type /Page /Parent 2 0 R >> endobj\n" + b"x" * 30_000
    pdf = b"%PDF-1.4\n" + page * 3 + b"2 0 obj << /Type /Pages /Count 3 >> endobj\n%%EOF"
    count = counter.count_fresh(_file("application/pdf", pdf))
    assert 3 * PDF_PAGE_TOKENS <= count < 3 * PDF_PAGE_TOKENS + 30
    # page objects compressed out of sight: pages estimated from the size
    packed = b"%PDF-1.7\n" + bytes(range(256)) * (3 * PDF_BYTES_PER_PAGE // 256)
    count = counter.count_fresh(_file("application/pdf", packed))
    assert 3 * PDF_PAGE_TOKENS <= count < 3 * PDF_PAGE_TOKENS + 30


def test_a_text_file_counts_its_text_and_other_files_their_bytes() -> None:
    counter = TokenCounter()
    text = "The quarterly numbers went up in every region but the north. " * 40
    as_text = counter.count_fresh(Message("user", [{"type": "text", "text": text}]))
    as_file = counter.count_fresh(_file("text/plain", text.encode()))
    assert as_text <= as_file < as_text + 30
    blob = bytes(range(256)) * 400
    count = counter.count_fresh(_file("application/zip", blob))
    assert len(blob) // OTHER_BYTES_PER_TOKEN <= count < len(blob) // OTHER_BYTES_PER_TOKEN + 30
    # a file by reference: only its JSON is known
    linked = {"type": "file", "mediaType": "application/pdf", "url": "https://x/y.pdf"}
    assert counter.count_fresh(Message("user", [linked])) < 40


_IMAGES = st.builds(
    lambda media, url, extra: {"type": "file", "mediaType": media, "url": url, **extra},
    st.sampled_from(
        ["image/png", "image/*", "application/pdf", "audio/wav", "text/plain", "application/zip"]
    ),
    st.text(max_size=300)
    | st.builds(
        lambda media, data: f"data:{media};base64," + base64.b64encode(data).decode(),
        st.sampled_from(["audio/wav", "audio/mpeg", "application/pdf", "text/csv", "x/y"]),
        st.binary(max_size=2000)
        | st.builds(lambda s: _wav(s), st.floats(0, 1))
        | st.builds(lambda t: t.encode(), st.text(max_size=300)),
    ),
    st.dictionaries(st.sampled_from(["filename", "x"]), st.text(max_size=20), max_size=2),
)


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(
        _IMAGES | st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=50)),
        min_size=1,
        max_size=4,
    )
)
def test_at_most_still_bounds_the_count(name: str, parts: list[dict[str, object]]) -> None:
    counter = TokenCounter(name, cache_size=0)
    message = Message("user", parts)
    bound = counter.at_most(message)
    assert bound >= counter.count_fresh(message)
    for limit in (0, bound // 2, bound - 1, bound, bound + 5):
        within = counter.at_most(message, limit)
        assert within == bound if bound <= limit else within > limit
