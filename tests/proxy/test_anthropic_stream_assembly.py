"""Streamed Anthropic replies the proxy must assemble as the SDK does.

The upstream is a test's own aiohttp app replaying an event sequence the fake
upstream does not produce (nulls in a block's start, the compaction beta's
``compaction_delta``, a ``message_delta`` usage with nulls); the real
``anthropic`` SDK reads it through the proxy. What the SDK assembles is what
the client holds: the proxy must store that, and send it back upstream on the
next turn, and never break the client's stream over an event it reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
from aiohttp import web

from fastpaca_core.jsonutil import dumps

from .support import ANTHROPIC_MODEL, proxy_before

JSON = dict[str, Any]
CITATION = {
    "type": "char_location",
    "cited_text": "The sky is blue.",
    "document_index": 0,
    "document_title": "Facts",
    "start_char_index": 0,
    "end_char_index": 16,
}


class _Upstream:
    """Answers ``POST /v1/messages``: a stream of scripted events, or a JSON
    message; records every request body."""

    def __init__(self) -> None:
        self.streams: list[list[JSON]] = []
        self.messages: list[JSON] = []
        self.bodies: list[JSON] = []

    async def answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        if not body.get("stream"):
            return web.json_response(self.messages.pop(0))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in self.streams.pop(0):
            await response.write(f"event: {event['type']}\n".encode() + b"data: ")
            await response.write(dumps(event) + b"\n\n")
        await response.write_eof()
        return response

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.answer)
        return app


@asynccontextmanager
async def _stack(tmp_path: Path) -> AsyncIterator[tuple[_Upstream, str]]:
    upstream = _Upstream()
    async with proxy_before(upstream.app(), f"sqlite:///{tmp_path / 'a.db'}") as base:
        yield upstream, base


def _message(usage: JSON) -> JSON:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }


def _events(blocks: list[tuple[JSON, list[JSON]]], start: JSON, delta: JSON) -> list[JSON]:
    """message_start (usage ``start``), the blocks (start, deltas, stop),
    message_delta (usage ``delta``), message_stop."""
    events: list[JSON] = [{"type": "message_start", "message": _message(start)}]
    for index, (block, deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": delta,
        }
    )
    events.append({"type": "message_stop"})
    return events


def _client(base: str, context_id: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=f"{base}/v1/contexts/{context_id}/anthropic", api_key="k", max_retries=0
    )


USER: list[Any] = [{"role": "user", "content": "go"}]
NEXT: list[Any] = [{"role": "user", "content": "and then?"}]


async def test_citations_after_a_null_start_are_kept(tmp_path: Path) -> None:
    """A text block that starts with ``citations: null`` (the SDK reads null
    as none) and gets its citations by ``citations_delta``."""
    text: JSON = {"type": "text", "text": "", "citations": None}
    deltas: list[JSON] = [
        {"type": "citations_delta", "citation": CITATION},
        {"type": "text_delta", "text": "Blue."},
    ]
    usage = {"input_tokens": 30, "output_tokens": 1}
    async with _stack(tmp_path) as (upstream, base):
        upstream.streams.append(_events([(text, deltas)], usage, {"output_tokens": 3}))
        upstream.messages.append({**_message(usage), "content": [{"type": "text", "text": "ok"}]})
        async with _client(base, "cite") as sdk:
            async with sdk.messages.stream(
                model=ANTHROPIC_MODEL, max_tokens=50, messages=USER
            ) as stream:
                final = await stream.get_final_message()
            blocks = [b.model_dump(exclude_none=True) for b in final.content]
            assert blocks == [{"type": "text", "text": "Blue.", "citations": [CITATION]}]
            await sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=50, messages=NEXT)
        assert upstream.bodies[-1]["messages"] == [
            *USER,
            {"role": "assistant", "content": blocks},
            *NEXT,
        ]


async def test_a_compaction_block_is_stored_with_its_content(tmp_path: Path) -> None:
    """The compaction beta: a ``compaction`` block whose summary and opaque
    ``encrypted_content`` come in a ``compaction_delta``; sent back unchanged."""
    block: JSON = {"type": "compaction", "content": None}
    delta = {"type": "compaction_delta", "content": "Summary so far.", "encrypted_content": "Zm9v"}
    text = {"type": "text", "text": ""}
    usage = {"input_tokens": 30, "output_tokens": 1}
    async with _stack(tmp_path) as (upstream, base):
        upstream.streams.append(
            _events(
                [(block, [delta]), (text, [{"type": "text_delta", "text": "Done."}])],
                usage,
                {"output_tokens": 9},
            )
        )
        upstream.messages.append({**_message(usage), "content": [{"type": "text", "text": "ok"}]})
        async with _client(base, "compact") as sdk:
            async with sdk.beta.messages.stream(
                model=ANTHROPIC_MODEL, max_tokens=50, messages=USER
            ) as stream:
                final = await stream.get_final_message()
            blocks = [b.model_dump(exclude_none=True) for b in final.content]
            assert blocks[0] == {
                "type": "compaction",
                "content": "Summary so far.",
                "encrypted_content": "Zm9v",
            }
            await sdk.messages.create(model=ANTHROPIC_MODEL, max_tokens=50, messages=NEXT)
        assert upstream.bodies[-1]["messages"][1] == {"role": "assistant", "content": blocks}


async def _window(base: str, context_id: str) -> JSON:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v1/contexts/{context_id}/context") as resp:
            window: JSON = await resp.json()
            return window


async def test_null_usage_figures_in_message_delta_keep_message_start_ones(
    tmp_path: Path,
) -> None:
    """``message_delta`` usage figures that are null leave those of
    ``message_start`` standing (as the SDK reads them): the stream calibrates
    the context as the same stream without the nulls does."""
    usage = {"input_tokens": 40, "cache_read_input_tokens": 60, "output_tokens": 1}
    nulls = {"input_tokens": None, "cache_creation_input_tokens": None}
    text = {"type": "text", "text": ""}
    question: list[Any] = [
        {"role": "user", "content": "a question long enough to teach the calibration " * 4}
    ]
    async with _stack(tmp_path) as (upstream, base):
        for delta in ({"output_tokens": 2}, {**nulls, "cache_read_input_tokens": None}):
            upstream.streams.append(
                _events(
                    [(text, [{"type": "text_delta", "text": "Yes."}])],
                    usage,
                    {**delta, "output_tokens": 2},
                )
            )
        for context_id in ("plain", "nulls"):
            async with _client(base, context_id) as sdk:
                async with sdk.messages.stream(
                    model=ANTHROPIC_MODEL, max_tokens=50, messages=question
                ) as stream:
                    final = await stream.get_final_message()
                assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (40, 60)
        plain, nulled = await _window(base, "plain"), await _window(base, "nulls")
        assert plain["used_tokens"] != plain["used_tokens_estimate"]  # it calibrated
        assert nulled["used_tokens"] == plain["used_tokens"]


def _marks(body: JSON) -> int:
    """The cache breakpoints of a request: the top-level one (automatic
    caching, which takes a slot of the 4) and every block's."""

    def count(value: Any) -> int:
        if isinstance(value, list):
            return sum(count(item) for item in value)
        if isinstance(value, dict):
            return ("cache_control" in value) + sum(count(v) for v in value.values())
        return 0

    return count(body)


async def test_the_top_level_breakpoint_counts_toward_the_four(tmp_path: Path) -> None:
    """Top-level ``cache_control`` (automatic caching) takes one of Anthropic's
    4 breakpoint slots; with a marked system prompt and the newest message
    marked each turn, the log's older marks must leave room for it."""
    ephemeral: Any = {"type": "ephemeral"}
    system: Any = [{"type": "text", "text": "You help.", "cache_control": ephemeral}]
    answer = {
        **_message({"input_tokens": 9, "output_tokens": 1}),
        "content": [{"type": "text", "text": "ok"}],
    }
    async with _stack(tmp_path) as (upstream, base):
        async with _client(base, "auto-cache") as sdk:
            for turn in range(4):
                upstream.messages.append(answer)
                message: Any = {
                    "role": "user",
                    "content": [{"type": "text", "text": f"q{turn}", "cache_control": ephemeral}],
                }
                await sdk.messages.create(
                    model=ANTHROPIC_MODEL,
                    max_tokens=10,
                    system=system,
                    messages=[message],
                    cache_control=ephemeral,
                )
                sent = upstream.bodies[-1]
                assert sent["messages"][-1] == message and sent["system"] == system
                assert _marks(sent) == min(turn + 3, 4)
