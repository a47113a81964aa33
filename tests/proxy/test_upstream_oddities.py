"""Upstream replies a careful proxy survives: cookies, and usage counts no
64-bit column holds. The upstream is a test's own aiohttp app."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from fastpaca_proxy import calibration

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


def _answering(usage: dict[str, int]) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        message = {"role": "assistant", "content": "a reply of a few words"}
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage,
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


async def test_a_failing_estimate_does_not_lose_the_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> int:
        raise AttributeError("an estimator bug")

    monkeypatch.setattr(calibration, "aestimate_prompt_tokens", broken)
    upstream = _answering({"prompt_tokens": 500, "completion_tokens": 6})
    async with proxy_before(upstream, f"sqlite:///{tmp_path / 'e.db'}") as base:
        stored, factor = await _one_turn(base, "est")
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["token_count"] == 6 and factor == 1.0
