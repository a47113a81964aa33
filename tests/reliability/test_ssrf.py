"""Nothing in a request changes where the proxy sends it (no SSRF).

A *capture server* (a plain aiohttp app on another loopback port) records
every request it receives. The proxy stack runs with its real fake upstream
as the configured upstream. Proxy requests of every kind (OpenAI chat,
Responses, Anthropic; context in the path, in the header, or none) carry
upstream-looking fields in the body (``base_url``, ``api_base``, ``baseURL``,
``url``, ``endpoint``...) and odd headers (``Host``, ``X-Forwarded-*``,
``Forwarded``, ``X-Fastpaca-Upstream``-like names, provider keys), all naming
the capture server; some are sent with an absolute-form request target over a
raw socket. Every one must reach the fake upstream and none the capture
server. A 302 from the upstream to the capture server is passed back, never
followed.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp import web
from proxy.support import Stack, run_stack, serve_in_thread

from fastpaca_core.jsonutil import dumps
from fastpaca_proxy.fake_upstream import ErrorReply


class Capture:
    """Records every request that reaches it; answers 200 JSON to all."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        async def record(request: web.Request) -> web.Response:
            await request.read()
            with self._lock:
                self.seen.append(f"{request.method} {request.path_qs}")
            return web.json_response({"captured": True})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        return app


@pytest.fixture(scope="module")
def capture() -> Iterator[tuple[Capture, str]]:
    server = Capture()
    with serve_in_thread(server.app) as url:
        # it does record what reaches it, so "nothing seen" below means something
        assert httpx.post(url + "/probe", json={}).json() == {"captured": True}
        assert server.seen == ["POST /probe"]
        server.seen.clear()
        yield server, url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    db: Path = tmp_path_factory.mktemp("ssrf") / "ssrf.db"
    with run_stack(f"sqlite:///{db}") as running:
        yield running


def lures(target: str) -> dict[str, Any]:
    """Body fields that name an upstream, all pointing at ``target``."""
    return {
        "base_url": target,
        "api_base": target,
        "baseURL": target,
        "url": target,
        "endpoint": target,
        "upstream": target,
        "api_url": target,
        "openai_base_url": target,
        "anthropic_base_url": target,
        "extra_body": {"base_url": target},
        "metadata": {"base_url": target, "url": target},
    }


def header_lures(target: str) -> dict[str, str]:
    host = urlsplit(target).netloc
    return {
        "Host": host,
        "X-Forwarded-Host": host,
        "X-Forwarded-Proto": "http",
        "X-Forwarded-For": "127.0.0.1",
        "Forwarded": f"for=127.0.0.1;host={host};proto=http",
        "X-Fastpaca-Upstream": target,
        "X-Upstream-URL": target,
        "X-Upstream-Base-URL": target,
        "X-OpenAI-Base-URL": target,
        "X-Anthropic-Base-URL": target,
        "X-Original-URL": target + "/v1/chat/completions",
        "X-Rewrite-URL": target + "/v1/chat/completions",
        "Origin": target,
        "Referer": target,
        "Authorization": "Bearer sk-test-provider-key",
        "x-api-key": "sk-ant-test-provider-key",
        "anthropic-version": "2023-06-01",
        "OpenAI-Organization": "org-test",
    }


def calls(target: str) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(name, path, extra headers, body) of every proxy call form."""
    chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    responses = {"model": "gpt-test", "input": "hi"}
    anthropic = {
        "model": "claude-test",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    out = []
    for streaming in (False, True):
        tag = "-stream" if streaming else ""
        forms = [
            ("chat-path", "/v1/contexts/ssrf-chat/openai/chat/completions", {}, chat),
            ("chat-header", "/v1/chat/completions", {"X-Fastpaca-Context": "ssrf-ch"}, chat),
            ("chat-none", "/v1/chat/completions", {}, chat),
            ("responses-path", "/v1/contexts/ssrf-r/openai/responses", {}, responses),
            ("responses-header", "/v1/responses", {"X-Fastpaca-Context": "ssrf-rh"}, responses),
            ("responses-none", "/v1/responses", {}, responses),
            ("anthropic-path", "/v1/contexts/ssrf-a/anthropic/v1/messages", {}, anthropic),
            ("anthropic-header", "/v1/messages", {"X-Fastpaca-Context": "ssrf-ah"}, anthropic),
            ("anthropic-none", "/v1/messages", {}, anthropic),
        ]
        for name, path, headers, body in forms:
            out.append((name + tag, path, headers, {**body, **lures(target), "stream": streaming}))
    return out


def test_no_request_field_or_header_redirects_the_proxy(
    stack: Stack, capture: tuple[Capture, str]
) -> None:
    server, target = capture
    stack.fake.clear()
    sent = 0
    with httpx.Client(base_url=stack.base, timeout=30) as client:
        for name, path, headers, body in calls(target):
            reply = client.post(path, json=body, headers={**header_lures(target), **headers})
            assert reply.status_code == 200, (name, reply.status_code, reply.text[:300])
            sent += 1
        for path in ("/v1/models", "/v1/contexts/ssrf-m/openai/models", "/v1/models/gpt-test"):
            reply = client.get(path, headers=header_lures(target))
            assert reply.status_code == 200, (path, reply.text[:300])
            sent += 1
        # a model id that is itself a URL stays a path segment of the upstream's URL
        reply = client.get("/v1/models/" + target.replace("/", "%2F"), headers=header_lures(target))
        assert reply.status_code < 500
        sent += 1
    received = stack.fake.requests
    assert server.seen == []
    assert len(received) == sent
    # the upstream saw its own host, and none of the lures' headers
    for request in received:
        assert request.headers.get("host") == urlsplit(stack.fake.base_url).netloc
        for name in ("x-forwarded-host", "forwarded", "x-fastpaca-upstream", "x-upstream-url"):
            assert name not in request.headers, (request.path, name)
    # each call with a context stored its turn (user + reply), twice (plain, streamed)
    for cid in ("ssrf-chat", "ssrf-ch", "ssrf-r", "ssrf-rh", "ssrf-a", "ssrf-ah"):
        assert [role for role, _ in stack.texts(cid)] == ["user", "assistant"] * 2, cid


def raw_exchange(base: str, raw: bytes) -> tuple[int, bytes]:
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_absolute_form_targets_go_to_the_configured_upstream(
    stack: Stack, capture: tuple[Capture, str]
) -> None:
    server, target = capture
    stack.fake.clear()
    host = urlsplit(target).netloc.encode()
    chat = dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "abs"}]})
    anthropic = dumps(
        {"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "abs"}]}
    )
    requests = [
        (b"/v1/contexts/ssrf-abs/openai/chat/completions", chat),
        (b"/v1/chat/completions", chat),
        (b"/v1/messages", anthropic),
    ]
    answered = 0
    for path, body in requests:
        raw = (
            b"POST " + target.encode() + path + b" HTTP/1.1\r\n"
            b"Host: " + host + b"\r\n"
            b"Connection: close\r\n"
            b"Content-Type: application/json\r\n"
            b"Anthropic-Version: 2023-06-01\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        status, reply = raw_exchange(stack.base, raw)
        assert status == 200, (path, status, reply[:300])
        answered += 1
    assert server.seen == []
    assert len(stack.fake.requests) == answered


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_from_the_upstream_are_not_followed(
    stack: Stack, capture: tuple[Capture, str], status: int
) -> None:
    server, target = capture
    stack.fake.clear()
    forms = [
        ("/v1/contexts/ssrf-redirect/openai/chat/completions", {}, "chat"),
        ("/v1/chat/completions", {}, "chat"),  # pass-through
        (
            "/v1/contexts/ssrf-redirect-a/anthropic/v1/messages",
            {"anthropic-version": "2023-06-01"},
            "anthropic",
        ),
        ("/v1/responses", {"X-Fastpaca-Context": "ssrf-redirect-r"}, "responses"),
    ]
    bodies = {
        "chat": {"model": "gpt-test", "messages": [{"role": "user", "content": "go"}]},
        "responses": {"model": "gpt-test", "input": "go"},
        "anthropic": {
            "model": "claude-test",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "go"}],
        },
    }
    with httpx.Client(base_url=stack.base, timeout=30, follow_redirects=False) as client:
        for path, headers, kind in forms:
            location = f"{target}/v1/{kind}"
            stack.fake.script(ErrorReply(status, headers={"Location": location}, body={}))
            reply = client.post(path, json=bodies[kind], headers=headers)
            assert reply.status_code == status, (path, reply.text[:300])
            assert reply.headers.get("location") == location
    assert server.seen == []
    assert len(stack.fake.requests) == len(forms)
    # a redirected call stored nothing
    for cid in ("ssrf-redirect", "ssrf-redirect-a", "ssrf-redirect-r"):
        log = stack.api.get(f"/v1/contexts/{cid}/messages")
        assert log.status_code == 404 or log.json()["messages"] == [], (cid, log.text)
