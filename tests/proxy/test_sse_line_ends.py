"""Streamed replies whose JSON holds line separators other than CR and LF.

Providers write their events' JSON as UTF-8 without escaping U+2028, U+2029
or U+0085 (JSON does not require it). Server-sent events end lines at CR and
LF only, as both SDKs read them; the proxy must read the stream the same way,
or it stores a reply other than the one its client received (or none).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anthropic
import openai
import orjson
from aiohttp import web

from fastpaca_proxy.fake_upstream import FakeUpstream, Reply, ToolCall
from fastpaca_proxy.sse import SSEParser

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, proxy_before

ODD = "one\u2028two\u2029three\x85four"


def test_only_cr_and_lf_end_a_line() -> None:
    data = orjson.dumps({"text": ODD})
    assert "\u2028".encode() in data  # written raw, as a provider writes it
    events = SSEParser().feed(b"event: delta\ndata: " + data + b"\r\n\r\n")
    assert [(e.event, json.loads(e.data)) for e in events] == [("delta", {"text": ODD})]


def _raw_utf8(fake: FakeUpstream) -> web.Application:
    """The fake upstream with its events' JSON written as providers write it:
    UTF-8, nothing escaped that JSON does not require (the fake escapes all
    non-ASCII)."""

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with aiohttp.ClientSession() as session:
            url = fake.base_url + request.path
            async with session.post(url, data=await request.read(), headers=headers) as up:
                response = web.StreamResponse(status=up.status)
                response.content_type = up.content_type
                await response.prepare(request)
                parser = SSEParser()
                async for chunk in up.content.iter_any():
                    for event in parser.feed(chunk):
                        lines = [] if event.event is None else [f"event: {event.event}".encode()]
                        if event.data == "[DONE]":
                            lines.append(b"data: [DONE]")
                        elif event.data:
                            lines.append(b"data: " + orjson.dumps(json.loads(event.data)))
                        await response.write(b"\n".join(lines) + b"\n\n")
                await response.write_eof()
                return response

    app = web.Application()
    app.router.add_post("/v1/messages", forward)
    app.router.add_post("/v1/responses", forward)
    app.router.add_post("/v1/chat/completions", forward)
    return app


@asynccontextmanager
async def _stack(tmp_path: Path) -> AsyncIterator[tuple[FakeUpstream, str]]:
    async with FakeUpstream() as fake:
        store = f"sqlite:///{tmp_path / 'sse.db'}"
        async with proxy_before(_raw_utf8(fake), store) as base:
            yield fake, base


async def _log(base: str, context_id: str) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v1/contexts/{context_id}/messages") as resp:
            messages: list[dict[str, object]] = (await resp.json())["messages"]
            return messages


async def test_anthropic_stream_with_line_separators_is_stored_as_received(
    tmp_path: Path,
) -> None:
    async with _stack(tmp_path) as (fake, base):
        fake.script(
            Reply(text=f"{ODD} end"),
            Reply(tool_calls=[ToolCall("note", {"text": ODD}, id="toolu_odd")]),
        )
        async with anthropic.AsyncAnthropic(
            base_url=f"{base}/v1/contexts/odd-a/anthropic", api_key="k", max_retries=0
        ) as sdk:
            async with sdk.messages.stream(
                model=ANTHROPIC_MODEL, max_tokens=50, messages=[{"role": "user", "content": "go"}]
            ) as stream:
                text = await stream.get_final_text()
            assert text == f"{ODD} end"
            async with sdk.messages.stream(
                model=ANTHROPIC_MODEL, max_tokens=50, messages=[{"role": "user", "content": "n"}]
            ) as stream:
                final = await stream.get_final_message()
        assert final.content[0].type == "tool_use" and final.content[0].input == {"text": ODD}
        log = await _log(base, "odd-a")
        assert [m["parts"] for m in log] == [
            [{"type": "text", "text": "go"}],
            [{"type": "text", "text": f"{ODD} end"}],
            [{"type": "text", "text": "n"}],
            [
                {
                    "type": "tool-note",
                    "toolCallId": "toolu_odd",
                    "state": "input-available",
                    "input": {"text": ODD},
                }
            ],
        ]


async def test_responses_stream_with_line_separators_is_stored(tmp_path: Path) -> None:
    async with _stack(tmp_path) as (fake, base):
        fake.script(Reply(text=f"{ODD} end"))
        async with openai.AsyncOpenAI(
            base_url=f"{base}/v1/contexts/odd-r/openai", api_key="k", max_retries=0
        ) as sdk:
            async with sdk.responses.stream(model=OPENAI_MODEL, input="go") as stream:
                final = await stream.get_final_response()
        assert final.output_text == f"{ODD} end"
        log = await _log(base, "odd-r")
        assert [(m["role"], m["parts"][0]["text"]) for m in log] == [  # type: ignore[index]
            ("user", "go"),
            ("assistant", f"{ODD} end"),
        ]


async def test_chat_stream_with_line_separators_is_stored_as_received(tmp_path: Path) -> None:
    async with _stack(tmp_path) as (fake, base):
        fake.script(Reply(text=f"{ODD} end"))
        async with openai.AsyncOpenAI(
            base_url=f"{base}/v1/contexts/odd-c/openai", api_key="k", max_retries=0
        ) as sdk:
            stream = await sdk.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": "go"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == f"{ODD} end"
        log = await _log(base, "odd-c")
        assert [(m["role"], m["parts"][0]["text"]) for m in log] == [  # type: ignore[index]
            ("user", "go"),
            ("assistant", f"{ODD} end"),
        ]
