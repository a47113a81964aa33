"""The proxy's per-call work: cached token counts, narrow history reads, one commit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.model import ContextRecord, Message, StoredMessage, calibrated
from fastpaca_core.stores.sqlite import SQLiteStore
from fastpaca_core.tokens import TokenCounter
from fastpaca_proxy.adapters import OpenAIChat
from fastpaca_proxy.calibration import estimate_prompt_tokens
from fastpaca_proxy.fake_upstream import ErrorReply
from fastpaca_proxy.turns import align, tail_match, tail_size

from .support import OPENAI_MODEL, Stack, chat_upstream, proxy_before, run_stack

TEXTS = [
    "",
    "short",
    "You are a terse assistant. Answer in one short paragraph, please, and be kind.",
    "naïve café — 東京 🚀 " * 50,
    "x" * 20_000,  # large: counted off the loop when not cached
    '{"tools": [{"type": "function", "name": "w"}]}' * 30,
]


def test_cached_text_counts_equal_uncached() -> None:
    cached, plain = TokenCounter(), TokenCounter(cache_size=0)
    for _ in range(2):  # the second round is served from the cache
        for text in TEXTS:
            assert cached.count_text_cached(text) == plain.count_text(text)
            assert asyncio.run(cached.acount_text(text)) == plain.count_text(text)


def test_cached_message_counts_equal_uncached() -> None:
    cached, plain = TokenCounter(), TokenCounter(cache_size=0)
    messages = [Message("user", [{"type": "text", "text": t}], token_count=7) for t in TEXTS] + [
        Message("assistant", [{"type": "tool-w", "toolCallId": "c", "input": {"q": "x" * 90}}]),
        # the same text split differently is a different message
        Message("user", [{"type": "text", "text": "ab"}, {"type": "text", "text": "c" * 80}]),
        Message("user", [{"type": "text", "text": "abc" + "c" * 79}]),
    ]
    for _ in range(2):
        expected = [plain.count_message(replace(m, token_count=None)) for m in messages]
        assert [cached.count_fresh(m) for m in messages] == expected
        assert asyncio.run(cached.acount_fresh(messages)) == expected


def test_the_cache_is_bounded() -> None:
    counter = TokenCounter(cache_size=4)
    for i in range(20):
        counter.count_text_cached(f"text number {i} " * 10)
    assert len(counter._cache) == 4


def test_prompt_estimate_is_unchanged_by_the_cache() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "tools": [{"type": "function", "function": {"name": "w", "parameters": {}}}],
        "messages": [
            {"role": "system", "content": "You are a terse assistant. " * 5},
            {"role": "user", "content": "hello there " * 20},
            {"role": "assistant", "content": "hi " * 30},
            {"role": "user", "content": "and again"},
        ],
    }
    chat, plain = OpenAIChat(), TokenCounter(cache_size=0)
    split = chat.split(body)
    rest = {k: v for k, v in body.items() if k != "messages"}
    expected = sum(plain.count_message(m) for m in split.messages) + plain.count_text(
        dumps_str([rest, split.preamble])
    )
    counter = TokenCounter()
    for _ in range(2):
        assert estimate_prompt_tokens(counter, chat, body) == expected


# -- alignment on few rows ----------------------------------------------------------


def _log(texts: list[str]) -> list[StoredMessage]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return [
        StoredMessage(
            i, "user" if i % 2 else "assistant", [{"type": "text", "text": t}], {}, 1, i, i, now
        )
        for i, t in enumerate(texts, start=1)
    ]


def _as_messages(rows: list[StoredMessage]) -> list[Message]:
    return [Message(r.role, r.parts) for r in rows]


def test_tail_match_agrees_with_align() -> None:
    log = _log([f"m{i}" for i in range(1, 41)])
    new = Message("user", [{"type": "text", "text": "new"}])
    cases = [
        [*_as_messages(log[-6:]), new],  # a trimmed window: the newest six, then new
        [new],  # only the newest message
        [*_as_messages(log[-6:-1]), new],  # stops short of the log's end: not a tail
        [*_as_messages(log[-6:-3]), *_as_messages(log[-2:]), new],  # a gap
    ]
    for request in cases:
        quick = tail_match(request, log[-tail_size(len(request)) :] if len(request) > 1 else [], 40)
        full = align(request, log, 40)
        if quick is not None:
            assert quick == full
    assert tail_match(cases[0], log[-6:], 40) is not None
    assert tail_match(cases[2], log[-5:], 40) is None
    assert tail_match(cases[3], log[-5:], 40) is None


@pytest.fixture
def rows_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many rows each read of the (real) SQLite store returned."""
    counts: list[int] = []
    real = SQLiteStore.read_messages
    real_window = SQLiteStore.read_window

    async def counting(
        self: SQLiteStore, context_id: str, a: int, b: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        rows = await real(self, context_id, a, b, max_bytes)
        counts.append(len(rows))
        return rows

    async def counting_window(
        self: SQLiteStore, context_id: str, tail: int = 0
    ) -> tuple[ContextRecord | None, list[StoredMessage]]:
        ctx, rows = await real_window(self, context_id, tail)
        counts.append(len(rows))
        return ctx, rows

    monkeypatch.setattr(SQLiteStore, "read_messages", counting)
    monkeypatch.setattr(SQLiteStore, "read_window", counting_window)
    yield counts


def test_long_history_clients_read_few_rows(tmp_path: Path, rows_read: list[int]) -> None:
    with run_stack(f"sqlite:///{tmp_path / 'p.db'}") as stack:
        _conversation(stack, rows_read)


def _conversation(stack: Stack, rows_read: list[int]) -> None:
    stack.api.put("/v1/contexts/long", json={"token_budget": 300, "trigger_ratio": 0.7})
    sdk = stack.track(openai.OpenAI(base_url=stack.openai_url("long"), api_key="k", max_retries=0))
    history: list[dict[str, Any]] = []

    def call(messages: list[dict[str, Any]]) -> None:
        reply = sdk.chat.completions.create(model=OPENAI_MODEL, messages=messages)
        history.append({"role": "assistant", "content": reply.choices[0].message.content})

    for turn in range(30):  # a client resending its whole history: a 60-message log
        history.append({"role": "user", "content": f"question {turn} " * 4})
        call(list(history))
    assert len(stack.log("long")) == 60
    live = len(stack.window("long")["messages"])

    # a client sending a trimmed window: its last 6 messages and the new one
    rows_read.clear()
    for turn in range(30, 35):
        history.append({"role": "user", "content": f"question {turn} " * 4})
        call(history[-7:])
    reads = list(rows_read)
    log = stack.log("long")
    assert len(log) == 70  # each turn stored once: nothing of the window stored again
    assert [m["parts"][0]["text"] for m in log[60::2]] == [
        f"question {t} " * 4 for t in range(30, 35)
    ]
    # one read per call, of the newest 6 rows and the live ones (the wide read: 30+);
    # the live window grows by a turn (2 rows) a call until the policy trims it
    assert len(reads) == 5 and max(reads) <= max(6, live + 2 * len(reads)) < 30

    # a client sending only its newest message: no history read beyond the live rows
    live = len(stack.window("long")["messages"])
    rows_read.clear()
    for turn in range(35, 38):
        history.append({"role": "user", "content": f"question {turn} " * 4})
        call(history[-1:])
    reads = list(rows_read)
    assert len(stack.log("long")) == 76
    assert len(reads) == 3 and max(reads) <= live + 2 * len(reads)


def test_a_turn_is_answered_before_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every proxied turn, streamed or not, takes the store's early answer
    (``reply_before_sync``: the COMMIT follows the reply, or a stream's last
    event). The log holds each turn when the client reads it right after."""
    answered: list[str] = []
    real = SQLiteStore._answer_early

    def recording(self: SQLiteStore, outcomes: Any) -> Any:
        # recorded as the store answers, before the reply leaves: its COMMIT
        # runs after the reply, racing the client
        early = real(self, outcomes)
        answered.extend(job.context_id for job in early)
        return early

    monkeypatch.setattr(SQLiteStore, "_answer_early", recording)
    with run_stack(f"sqlite:///{tmp_path / 'p.db'}") as stack:
        sdk = stack.track(openai.OpenAI(base_url=stack.openai_url("e"), api_key="k", max_retries=0))
        sdk.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "first"}]
        )
        assert answered == ["e"]
        assert [role for role, _ in stack.texts("e")] == ["user", "assistant"]
        chunks = sdk.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "second"}], stream=True
        )
        assert sum(1 for _ in chunks) > 1
        assert answered == ["e", "e"]  # the stream's turn too
        assert [text for _, text in stack.texts("e")][2] == "second"
        sdk.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "third"}]
        )
        assert answered == ["e", "e", "e"]
        assert len(stack.log("e")) == 6
        appended = stack.api.post(
            "/v1/contexts/e/messages",
            json={"message": {"role": "user", "parts": [{"type": "text", "text": "rest"}]}},
        )
        assert appended.status_code == 201
        assert answered == ["e", "e", "e"]  # the REST API's appends: committed first


def test_a_turn_with_room_is_counted_after_it_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-streamed call whose window keeps its whole new turn even at the
    turn's largest possible size: the turn is tokenised after the upstream body
    is built (while the upstream works), once, and stored with its exact count;
    the Used-Tokens header counts it exactly too, stored or not. A stream's
    turn, and one that might not fit, are counted before they are sent."""
    # each new message starts with "needle" (the fake upstream's replies echo it)
    first = "needle, the first " + "word " * 40
    second = "needle, a second " + "more " * 30
    big = "needle " + "é" * 300  # ~600 bytes, far fewer tokens
    counter = TokenCounter()  # counted before the counting is recorded below
    exact = {
        t: counter.count_fresh(Message("user", [{"type": "text", "text": t}]))
        for t in (first, second, big)
    }
    events: list[str] = []
    real_build, real_pieces = OpenAIChat.build, TokenCounter._count_pieces

    def build(self: OpenAIChat, *args: Any) -> Any:
        events.append("build")
        return real_build(self, *args)

    def pieces(self: TokenCounter, texts: Any) -> int:
        events.extend("count" for text in texts if text.startswith("needle"))
        return real_pieces(self, texts)

    monkeypatch.setattr(OpenAIChat, "build", build)
    monkeypatch.setattr(TokenCounter, "_count_pieces", pieces)
    with run_stack(f"sqlite:///{tmp_path / 'p.db'}") as stack:
        sdk = stack.track(openai.OpenAI(base_url=stack.openai_url("d"), api_key="k", max_retries=0))
        sdk.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": first}]
        )
        assert events == ["build", "count"]
        assert stack.log("d")[0]["token_count"] == exact[first]

        events.clear()  # an upstream error: nothing stored, the header counts the turn exactly
        stack.fake.script(ErrorReply(500))
        window = stack.window("d")
        before = window["used_tokens"]
        ctx = asyncio.run(_context(tmp_path / "p.db", "d"))
        expected = calibrated(window["used_tokens_estimate"] + exact[second], ctx.calibration)
        raw = sdk.chat.completions.with_raw_response
        with pytest.raises(openai.InternalServerError) as failed:
            raw.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": second}])
        assert events == ["build", "count"]
        used = int(failed.value.response.headers["X-Fastpaca-Used-Tokens"])
        assert used == expected  # the window as sent: the stored one and the new turn

        events.clear()  # a stream: counted before it is sent
        chunks = sdk.chat.completions.create(
            model=OPENAI_MODEL,
            messages=[{"role": "user", "content": "needle, streamed"}],
            stream=True,
        )
        assert sum(1 for _ in chunks) > 1
        assert events[:2] == ["count", "build"]

        # a budget the turn might not fit in at its largest: counted before it is sent
        stack.api.put("/v1/contexts/d", json={"token_budget": before + 200}).raise_for_status()
        events.clear()
        sdk.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": big}])
        assert events[:2] == ["count", "build"]
        assert stack.log("d")[-2]["token_count"] == exact[big]


async def _context(path: Path, context_id: str) -> ContextRecord:
    """The context as its database holds it (read on a connection of our own)."""
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    try:
        ctx = await store.get_context(context_id)
    finally:
        await store.close()
    assert ctx is not None
    return ctx


def test_a_deferred_count_that_cannot_go_to_a_thread_is_taken_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upstream has answered when a deferred turn is counted: a count that
    fails to reach a thread (the server shutting down) is taken on the loop,
    and the turn is stored as ever, not answered with a 500."""
    text = "needle, counted late " + "word " * 20
    expected = TokenCounter().count_fresh(Message("user", [{"type": "text", "text": text}]))

    async def broken(self: TokenCounter, messages: Any) -> list[int]:
        raise RuntimeError("cannot schedule new futures after shutdown")

    with run_stack(f"sqlite:///{tmp_path / 'p.db'}") as stack:
        monkeypatch.setattr(TokenCounter, "acount_fresh", broken)
        sdk = stack.track(openai.OpenAI(base_url=stack.openai_url("t"), api_key="k", max_retries=0))
        raw = sdk.chat.completions.with_raw_response.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": text}]
        )
        assert raw.http_response.status_code == 200
        assert stack.log("t")[0]["token_count"] == expected


async def test_a_deferred_count_runs_while_the_upstream_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count a non-streamed turn defers is taken once the request has gone
    out, while the upstream works, not after its reply came (it would add to
    every call's latency)."""
    events: list[str] = []
    real_pieces = TokenCounter._count_pieces

    def pieces(self: TokenCounter, texts: Any) -> int:
        events.extend("count" for text in texts if text.startswith("needle"))
        return real_pieces(self, texts)

    async def answer(request: web.Request) -> web.Response:
        events.append("upstream has the request")
        await asyncio.sleep(0.2)
        events.append("upstream answers")
        message = {"role": "assistant", "content": "a reply"}
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
        )

    text = "needle, counted while the upstream works " + "word " * 30
    expected = TokenCounter().count_fresh(Message("user", [{"type": "text", "text": text}]))
    monkeypatch.setattr(TokenCounter, "_count_pieces", pieces)
    store = f"sqlite:///{tmp_path / 'w.db'}"
    async with proxy_before(chat_upstream(answer), store) as base:
        async with aiohttp.ClientSession() as session:
            body = {"model": "m", "messages": [{"role": "user", "content": text}]}
            url = f"{base}/v1/contexts/w/openai/chat/completions"
            async with session.post(url, json=body) as resp:
                assert resp.status == 200
            async with session.get(f"{base}/v1/contexts/w/tail") as resp:
                log = (await resp.json())["messages"]
    assert events.index("count") < events.index("upstream answers")
    assert events.count("count") == 1
    assert log[0]["token_count"] == expected
