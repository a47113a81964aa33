"""Images count by what providers bill for them, not by their bytes."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_other_files_still_count_on_their_json() -> None:
    counter = TokenCounter()
    pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF" * 2000).decode()
    message = Message("user", [{"type": "file", "mediaType": "application/pdf", "url": pdf}])
    assert counter.count_fresh(message) > 1000


_IMAGES = st.builds(
    lambda media, url, extra: {"type": "file", "mediaType": media, "url": url, **extra},
    st.sampled_from(["image/png", "image/*", "application/pdf"]),
    st.text(max_size=300),
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
