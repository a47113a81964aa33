"""Upstream replies a careful proxy survives: cookies, and usage counts no
64-bit column holds. The upstream is a test's own aiohttp app."""

from __future__ import annotations

import math
from pathlib import Path

import aiohttp
from aiohttp import web

from fastpaca_core import Engine, open_store
from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.tokens import TokenCounter

from .support import chat_upstream, proxy_before

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_cookie_an_upstream_sets_is_not_sent_with_the_next_request(
    tmp_path: Path,
) -> None:
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"id": "x", "object": "chat.completion", "choices": []})
        response.set_cookie("edge", "client-one", path="/")
        return response

    # a host name: cookies from an IP address are never kept anyway
    store = f"sqlite:///{tmp_path / 'c.db'}"
    async with proxy_before(chat_upstream(answer), store, "localhost") as base:
        for client in ("one", "two"):
            async with aiohttp.ClientSession() as session:
                async with session.post(
                    f"{base}/v1/chat/completions",
                    json=BODY,
                    headers={"Authorization": f"Bearer sk-{client}"},
                ) as resp:
                    assert resp.status == 200
                    assert "Set-Cookie" not in resp.headers  # not passed back either
    assert seen == [None, None]


def _answering(*usages: dict[str, int]) -> web.Application:
    """An upstream whose replies report ``usages``, one per call."""
    reported = iter(usages)

    async def answer(request: web.Request) -> web.Response:
        message = {"role": "assistant", "content": "a reply of a few words"}
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": next(reported),
            }
        )

    return chat_upstream(answer)


async def _one_turn(base: str, context_id: str) -> tuple[list[dict[str, object]], float]:
    """A proxied call; the stored messages and the context's calibration factor."""
    question = "a user message long enough to be worth calibrating against " * 3
    body = {"model": "m", "messages": [{"role": "user", "content": question}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/v1/contexts/{context_id}/openai/chat/completions",
            json=body,
            headers={"Authorization": "Bearer k"},
        ) as resp:
            assert resp.status == 200
            assert resp.headers["X-Fastpaca-Version"] == "2"
        async with session.get(f"{base}/v1/contexts/{context_id}/messages") as resp:
            stored = (await resp.json())["messages"]
        async with session.get(f"{base}/v1/contexts/{context_id}/context") as resp:
            window = await resp.json()
    factor = window["used_tokens"] / window["used_tokens_estimate"]
    return stored, factor


async def test_usage_counts_past_64_bits_do_not_lose_the_turn(tmp_path: Path) -> None:
    """The reply is what the client paid for: it is stored, and the counts
    that fit no column teach the calibration nothing."""
    upstream = _answering({"prompt_tokens": 2**63, "completion_tokens": 2**64 - 1})
    async with proxy_before(upstream, f"sqlite:///{tmp_path / 'u.db'}") as base:
        stored, factor = await _one_turn(base, "big")
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert 0 < stored[1]["token_count"] < 2**63  # type: ignore[operator]  # ours
    assert factor == 1.0


async def test_the_sample_is_what_was_sent_by_the_counts_stored(tmp_path: Path) -> None:
    """The provider's prompt count is compared with the window as sent, by
    the counts the log holds (a reply counts as the provider reported it),
    plus the rest of the request: the very figures the factor scales."""
    # what the provider says each prompt took; the replies' counts are not ours
    upstream = _answering(
        {"prompt_tokens": 300, "completion_tokens": 150},
        {"prompt_tokens": 900, "completion_tokens": 150},
    )
    store = f"sqlite:///{tmp_path / 's.db'}"
    question = "a user message long enough to be worth calibrating against " * 3
    history: list[dict[str, str]] = []
    async with proxy_before(upstream, store) as base:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                history.append({"role": "user", "content": question})
                url = f"{base}/v1/contexts/cal/openai/chat/completions"
                body = {"model": "m", "messages": history}
                async with session.post(url, json=body, headers={"Authorization": "k"}) as resp:
                    assert resp.status == 200
                    history.append((await resp.json())["choices"][0]["message"])
            async with session.get(f"{base}/v1/contexts/cal/messages") as resp:
                counts = [m["token_count"] for m in (await resp.json())["messages"]]
    assert counts[1] == counts[3] == 150  # the replies, as the provider counted them
    rest = TokenCounter().count_text(dumps_str([{"model": "m"}, []]))
    first = 300 / (counts[0] + rest)
    second = 900 / (counts[0] + counts[1] + counts[2] + rest)
    async with open_store(store) as opened:
        ctx = await Engine(opened).get_context("cal")
    assert ctx.calibration_samples == 2
    assert math.isclose(ctx.calibration, (min(first, 2.0) + min(second, 2.0)) / 2)
