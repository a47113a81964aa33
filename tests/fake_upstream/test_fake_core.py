"""The fake itself: script queue, recordings, token figures, routes, runners, CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import httpx
import pytest

from fastpaca_proxy.fake_upstream import (
    ErrorReply,
    FakeUpstream,
    Reply,
    create_app,
    default_prompt_tokens,
    run_fake_upstream,
    run_fake_upstream_in_thread,
    split_pieces,
)

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "gpt-test", "input": "hi"}
MESSAGES = {
    "model": "claude-test",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "hi"}],
}
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


async def _post(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    headers = ANTHROPIC_HEADERS if path == "/v1/messages" else {}
    return await client.post(path, json=body, headers=headers)


async def test_script_queue_matches_protocols(fake: FakeUpstream) -> None:
    fake.script("for messages", protocol="anthropic")
    fake.script("for anyone", "second for anyone")
    fake.script(ErrorReply(418, message="teapot"), protocol="openai_responses")
    assert fake.pending == 4
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        chat = await _post(client, "/v1/chat/completions", CHAT)
        responses = await _post(client, "/v1/responses", RESPONSES)
        messages = await _post(client, "/v1/messages", MESSAGES)
        responses2 = await _post(client, "/v1/responses", RESPONSES)
        chat2 = await _post(client, "/v1/chat/completions", CHAT)
    assert chat.json()["choices"][0]["message"]["content"] == "for anyone"
    assert responses.json()["output"][0]["content"][0]["text"] == "second for anyone"
    assert messages.json()["content"][0]["text"] == "for messages"
    assert responses2.status_code == 418
    assert responses2.json()["error"]["message"] == "teapot"
    assert chat2.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert fake.pending == 0
    assert [r.protocol for r in fake.requests] == [
        "openai_chat",
        "openai_responses",
        "anthropic",
        "openai_responses",
        "openai_chat",
    ]
    assert len(fake.requests_for("openai_chat")) == 2
    fake.clear()
    assert fake.requests == [] and fake.pending == 0


async def test_unknown_protocol_is_refused(fake: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        fake.script("x", protocol="gemini")  # type: ignore[arg-type]


async def test_recording_details(fake: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        await client.post(
            "/v1/chat/completions?api-version=1",
            content=b"not json",
            headers={"X-Custom": "A", "Content-Type": "application/json"},
        )
    request = fake.last
    assert request.query == {"api-version": "1"}
    assert request.headers["x-custom"] == "A"
    assert request.raw_body == b"not json"
    assert request.body is None and request.status == 400
    with pytest.raises(TypeError):
        _ = request.json


async def test_unknown_route_is_a_404_in_provider_shape(fake: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        openai_style = await client.post("/v1/audio/speech", json={})
        anthropic_style = await client.get("/v1/nope", headers=ANTHROPIC_HEADERS)
    assert openai_style.status_code == 404
    assert openai_style.json()["error"]["message"] == "Invalid URL (POST /v1/audio/speech)"
    assert anthropic_style.status_code == 404
    assert anthropic_style.json()["error"]["type"] == "not_found_error"
    assert [r.path for r in fake.requests] == ["/v1/audio/speech", "/v1/nope"]


async def test_verbatim_error_body_and_headers(fake: FakeUpstream) -> None:
    fake.script(ErrorReply(502, body="<html>bad gateway</html>", headers={"x-upstream": "lb"}))
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        response = await _post(client, "/v1/chat/completions", CHAT)
    assert response.status_code == 502
    assert response.text == "<html>bad gateway</html>"
    assert response.headers["x-upstream"] == "lb"


def test_default_prompt_tokens_are_deterministic() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "abcd"},
            {"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]},
        ],
    }
    # 3 + 2 messages * 3 + ceil(4/4) + ceil(8/4)
    assert default_prompt_tokens("openai_chat", body) == 12
    assert default_prompt_tokens("openai_responses", {"input": "abcd"}) == 3 + 3 + 1
    with_tools = default_prompt_tokens("openai_chat", {**body, "tools": [{"a": 1}]})
    assert with_tools == 12 + 3  # ceil(len('[{"a":1}]') / 4)


def test_split_pieces() -> None:
    assert split_pieces("one two  three", None) == ["one", " two", "  three"]
    assert split_pieces("abcdefg", 3) == ["abc", "de", "fg"]
    assert split_pieces("ab", 5) == ["a", "b"]
    assert split_pieces("", 4) == []


async def test_latency_and_default_reply() -> None:
    async with run_fake_upstream(default_reply=Reply(text="fixed", latency=0.05)) as fake:
        async with httpx.AsyncClient(base_url=fake.base_url) as client:
            started = asyncio.get_running_loop().time()
            response = await _post(client, "/v1/chat/completions", CHAT)
            elapsed = asyncio.get_running_loop().time() - started
    assert response.json()["choices"][0]["message"]["content"] == "fixed"
    assert elapsed >= 0.05


def test_thread_runner_and_app_factory() -> None:
    with run_fake_upstream_in_thread(api_key="k") as fake:
        fake.script("from the thread")
        denied = httpx.post(f"{fake.openai_base_url}/chat/completions", json=CHAT)
        allowed = httpx.post(
            f"{fake.openai_base_url}/chat/completions",
            json=CHAT,
            headers={"Authorization": "Bearer k"},
        )
        port = fake.port
    assert denied.status_code == 401 and denied.json()["error"]["code"] is None
    assert allowed.json()["choices"][0]["message"]["content"] == "from the thread"
    assert port > 0
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    app = create_app()
    assert len(app.router.routes()) >= 7


async def test_stream_survives_client_going_away(fake: FakeUpstream) -> None:
    fake.script(Reply(text="x" * 50, chunks=50, delay=0.01))
    body = {**CHAT, "stream": True}
    async with (
        httpx.AsyncClient(base_url=fake.base_url) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        async for _ in response.aiter_lines():
            break
    fake.script("after")
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        again = await _post(client, "/v1/chat/completions", CHAT)
    assert again.json()["choices"][0]["message"]["content"] == "after"


def test_command_line() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastpaca_proxy.fake_upstream", "--port", "0", "--text", "cli"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base_url = line.split(" on ")[1].split(" ")[0]
        response = httpx.post(f"{base_url}/v1/chat/completions", json=CHAT)
        assert response.json()["choices"][0]["message"]["content"] == "cli"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
