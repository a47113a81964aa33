"""Limits, over real sockets: rate, body size and time, page sizes, streams,
the request deadline and the upstream's timeouts.

Every refusal has the JSON error shape (on proxy routes, the provider's); a
slow or stalled client is cut off without holding up anyone else.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import pytest
from live_api import Answer, Start, provider_error
from server_proc import ServerProc

from fastpaca_core.http.limits import RateLimiter
from fastpaca_core.http.openapi import openapi_document
from fastpaca_core.jsonutil import dumps, loads
from fastpaca_proxy.fake_upstream import Reply

ACME_KEY = "key-acme"
GLOBEX_KEY = "key-globex"
CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
ANTHROPIC = {
    "model": "claude-test",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hello"}],
}


def assert_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    body: dict[str, Any] = answer.json()
    assert set(body) == {"error", "message"} and body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body


# -- raw HTTP/1.1 over a socket (what aiohttp's client will not do) ---------------


async def raw_request(port: int, head: str, body: bytes = b"") -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    await writer.drain()
    return reader, writer


def parse_response(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Answer(status, headers, body)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection (bounded, not timed)."""
    return await asyncio.wait_for(reader.read(), 30)


# -- rate -----------------------------------------------------------------------


def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # empty: one token in half a second
    assert limiter.take("b") == 0.0  # buckets are per key
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    now[0] += 100.0  # a long pause fills the bucket to the burst, no more
    assert [limiter.take("a") for _ in range(4)][-1] > 0
    assert RateLimiter(0.5, 0).burst == 1  # default burst: one second's worth, at least 1


def test_token_bucket_keeps_a_bounded_number_of_keys() -> None:
    limiter = RateLimiter(1.0, 1, clock=lambda: 0.0, max_keys=2)
    for key in ("a", "b", "c"):
        assert limiter.take(key) == 0.0
    assert limiter.take("c") > 0  # kept
    assert limiter.take("a") == 0.0  # evicted (least recently used), so full again


async def test_rate_limit_per_tenant_with_retry_after(start: Start) -> None:
    server = await start(
        api_keys=f"acme:{ACME_KEY},globex:{GLOBEX_KEY}", rate_limit=0.01, rate_burst=3
    )
    acme = {"Authorization": f"Bearer {ACME_KEY}"}
    for _ in range(3):
        assert (await server.call("GET", "/v1/contexts", headers=acme)).status == 200
    refused = await server.call("GET", "/v1/contexts", headers=acme)
    assert_error(refused, 429, "rate_limited")
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 100
    # a proxy route counts against the same bucket, and refuses in the provider's shape
    limited = await server.call("POST", "/v1/chat/completions", json=CHAT, headers=acme)
    assert provider_error(limited, 429, "openai", "rate_limit_error")["code"] == "rate_limited"
    assert limited.headers["Retry-After"].isdigit()
    # the other tenant has its own bucket; health and metrics are never limited
    globex = {"X-Fastpaca-Key": GLOBEX_KEY}
    assert (await server.call("GET", "/v1/contexts", headers=globex)).status == 200
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert (await server.call("GET", path)).status == 200
    # a request without a key is refused by auth (it spends from its IP's bucket)
    assert (await server.call("GET", "/v1/contexts")).status == 401


async def test_guessing_keys_is_throttled_per_client_ip(start: Start) -> None:
    server = await start(api_keys=f"acme:{ACME_KEY}", rate_limit=0.01, rate_burst=3)
    for guess in ("a", "b", "c"):
        wrong = await server.call("GET", "/v1/contexts", headers={"X-Fastpaca-Key": guess})
        assert_error(wrong, 401, "unauthorized")
    throttled = await server.call("GET", "/v1/contexts", headers={"X-Fastpaca-Key": ACME_KEY[:-1]})
    assert_error(throttled, 429, "rate_limited")
    assert throttled.headers["Retry-After"].isdigit()
    assert_error(await server.call("GET", "/v1/contexts"), 429, "rate_limited")  # no key either
    # the tenant's own key is not held back by someone else's guesses
    acme = {"Authorization": f"Bearer {ACME_KEY}"}
    assert (await server.call("GET", "/v1/contexts", headers=acme)).status == 200


async def test_rate_limit_per_client_ip_with_auth_off(start: Start) -> None:
    server = await start(rate_limit=0.01, rate_burst=2)
    assert (await server.call("PUT", "/v1/contexts/a", json={})).status == 200
    assert (await server.call("GET", "/v1/contexts/a")).status == 200
    assert_error(await server.call("GET", "/v1/contexts/a"), 429, "rate_limited")


async def test_no_rate_limit_by_default(start: Start) -> None:
    server = await start()
    for _ in range(50):
        assert (await server.call("GET", "/v1/contexts")).status == 200


# -- body size ------------------------------------------------------------------

REST_BODY_ROUTES = [
    "PUT /v1/contexts/big",
    "POST /v1/contexts/big/messages",
]
# the proxy's routes have their own limit (proxy_max_body_bytes) and error shape
PROXY_BODY_ROUTES = [
    ("POST /v1/chat/completions", "openai"),  # no context: pass-through
    ("POST /v1/contexts/big/openai/responses", "openai"),
    ("POST /v1/contexts/big/anthropic/v1/messages", "anthropic"),
]
PROXY_TOO_LARGE = {"openai": "invalid_request_error", "anthropic": "request_too_large"}


async def test_declared_length_over_the_limit_is_refused_before_reading(start: Start) -> None:
    server = await start(max_body_bytes=1024, proxy_max_body_bytes=2048, body_timeout=600)
    routes = [(route, None) for route in REST_BODY_ROUTES] + PROXY_BODY_ROUTES
    for route, provider in routes:
        method, path = route.split()
        # headers only: the 413 comes without the server waiting for the body
        reader, writer = await raw_request(
            server.port,
            f"{method} {path} HTTP/1.1\nHost: t\nContent-Type: application/json\n"
            "Content-Length: 5000\n",
        )
        answer = parse_response(await read_to_eof(reader))
        writer.close()
        if provider is None:
            body = assert_error(answer, 413, "payload_too_large")
            assert body["message"] == "Request body exceeds 1024 bytes"
        else:
            error = provider_error(answer, 413, provider, PROXY_TOO_LARGE[provider])
            assert error["message"] == "Request body exceeds 2048 bytes"
        assert answer.headers["Connection"] == "close"
    assert server.fake.requests == []


async def test_a_client_still_sending_a_too_large_body_reads_the_413(tmp_path: Path) -> None:
    """The 413 comes before the body is read, and a client that goes on sending
    the body it declared still gets to read it, not a connection reset. A real
    ``fastpaca serve`` process (default 1 MiB limit) and httpx clients, as the
    Python client and the SDKs use it, each sending 3 MiB."""
    server = ServerProc(f"sqlite:///{tmp_path / 'big.db'}", tmp_path)
    await server.start()
    try:
        body = b'{"message": "' + b"x" * (3 * 1024 * 1024) + b'"}'
        url = server.base + "/v1/contexts/big/messages"

        async def send(client: httpx.AsyncClient) -> int | str:
            try:
                resp = await client.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.TransportError as exc:
                return type(exc).__name__
            return resp.status_code

        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.put(server.base + "/v1/contexts/big", json={})).status_code == 200
            outcomes: list[int | str] = []
            for _ in range(5):
                outcomes += await asyncio.gather(*(send(client) for _ in range(8)))
            assert outcomes == [413] * len(outcomes)
            message = {"message": {"role": "user", "parts": [{"type": "text", "text": "ok"}]}}
            resp = await client.post(url, json=message)
            assert resp.status_code == 201 and resp.json()["seq"] == 1
    finally:
        await server.stop()


async def test_chunked_body_over_the_limit_is_413(start: Start) -> None:
    server = await start(max_body_bytes=1024, proxy_max_body_bytes=2048)

    async def chunks(count: int) -> AsyncIterator[bytes]:
        yield b'{"message": {"role": "user", "parts": [{"type": "text", "text": "'
        for _ in range(count):
            yield b"x" * 500

    for route in REST_BODY_ROUTES:
        method, path = route.split()
        for count in (3, 10):  # over the limit of the REST routes (and the proxy's)
            answer = await server.call(
                method, path, data=chunks(count), headers={"Content-Type": "application/json"}
            )
            assert_error(answer, 413, "payload_too_large")
    for route, provider in PROXY_BODY_ROUTES:
        method, path = route.split()
        answer = await server.call(
            method, path, data=chunks(10), headers={"Content-Type": "application/json"}
        )
        provider_error(answer, 413, provider, PROXY_TOO_LARGE[provider])
        if "/contexts/" in path:  # (pass-through would forward it)
            # over the REST routes' limit, under the proxy's: read (and refused as not JSON)
            answer = await server.call(
                method, path, data=chunks(3), headers={"Content-Type": "application/json"}
            )
            provider_error(answer, 400, provider, "invalid_request_error")
    # a body just within the limit is read
    padded = {"metadata": {"pad": "x" * 900}}
    assert len(dumps(padded)) <= 1024
    assert (await server.call("PUT", "/v1/contexts/big", json=padded)).status == 200
    assert server.fake.requests == []


# -- page sizes -----------------------------------------------------------------


def _paged_routes() -> list[str]:
    paths = []
    for path, item in openapi_document()["paths"].items():
        get = item.get("get", {})
        if any(p.get("name") == "limit" for p in get.get("parameters", [])):
            paths.append(path)
    return sorted(paths)


async def test_every_paged_route_caps_limit(start: Start) -> None:
    server = await start(max_page_size=5)
    assert (await server.call("PUT", "/v1/contexts/p", json={})).status == 200
    for n in range(7):
        assert (await server.say("p", f"m{n}")).status == 201
    paged = _paged_routes()
    assert len(paged) >= 4, paged
    for template in paged:
        path = template.replace("{id}", "p")
        for bad in ("6", "0", "-1", "abc", "1.5", "99999999999999999999999"):
            answer = await server.call("GET", path, params={"limit": bad})
            body = assert_error(answer, 400, "invalid_request")
            assert "limit" in body["message"], body
        answer = await server.call("GET", path, params={"limit": "5"})
        assert answer.status == 200, (path, answer.body)
    full = await server.call("GET", "/v1/contexts/p/messages", params={"limit": "5"})
    assert len(full.json()["messages"]) == 5
    default = await server.call("GET", "/v1/contexts/p/messages")
    assert len(default.json()["messages"]) == 5  # the default page is capped too


# -- websocket streams per process -------------------------------------------------

_UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
}


async def test_streams_over_the_limit_get_503_json(start: Start) -> None:
    server = await start(max_streams=2)
    assert (await server.call("PUT", "/v1/contexts/s", json={})).status == 200
    url = server.base + "/v1/contexts/s/stream"
    first = await server.session.ws_connect(url)
    second = await server.session.ws_connect(url)
    try:
        refused = await server.call("GET", "/v1/contexts/s/stream", headers=_UPGRADE)
        body = assert_error(refused, 503, "too_many_streams")
        assert "2 streams" in body["message"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
            await server.session.ws_connect(url)
        assert handshake.value.status == 503
    finally:
        await first.close()
    # a slot is free again once the server has seen the close
    for _ in range(200):
        answer = await server.call("GET", "/v1/contexts/s/stream", headers=_UPGRADE)
        if answer.status == 101:
            break
        assert_error(answer, 503, "too_many_streams")
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the closed stream's slot was never freed")
    await second.close()


# -- the request deadline -------------------------------------------------------------


async def test_a_handler_past_the_deadline_answers_503(start: Start, pg_url: str) -> None:
    """A request stuck on a locked row is cut at the deadline; the server goes on."""
    server = await start(store=pg_url, request_timeout=0.5, store_timeout=60)
    assert (await server.call("PUT", "/v1/contexts/locked", json={})).status == 200
    dsn, schema = pg_url.rsplit("schema=", 1)
    conn = await asyncpg.connect(dsn[:-1])  # without "?" / "&"
    try:
        await conn.execute(f'SET search_path TO "{schema}"')
        async with conn.transaction():
            await conn.execute("SELECT id FROM contexts WHERE id = 'locked' FOR UPDATE")
            answer = await server.say("locked", "blocked")
            assert_error(answer, 503, "deadline_exceeded")
            assert answer.headers["Retry-After"] == "1"
            # other requests are served meanwhile
            assert (await server.call("GET", "/v1/contexts/locked")).status == 200
    finally:
        await conn.close()
    assert (await server.say("locked", "after")).status == 201


async def test_deadline_spares_websockets_and_started_streams(start: Start) -> None:
    server = await start(request_timeout=0.3)
    assert (await server.call("PUT", "/v1/contexts/w", json={})).status == 200
    async with server.session.ws_connect(server.base + "/v1/contexts/w/stream") as ws:
        await asyncio.sleep(1.0)  # well past the deadline
        assert (await server.say("w", "still here")).status == 201
        while True:
            frame = loads(await ws.receive_str(timeout=10))
            if frame["type"] == "message":
                break
        assert frame["message"]["parts"][0]["text"] == "still here"
    # a proxied stream that lasts longer than the deadline runs to its end
    server.fake.script(Reply(text="one two three four five six", chunks=6, delay=0.15))
    answer = await server.call(
        "POST", "/v1/contexts/w/openai/chat/completions", json={**CHAT, "stream": True}
    )
    assert answer.status == 200
    assert answer.body.rstrip().endswith(b"data: [DONE]")
    # a non-streamed proxied call may take the upstream's time, not only the deadline
    server.fake.script(Reply(text="slow answer", latency=0.8))
    slow = await server.call("POST", "/v1/contexts/w/openai/chat/completions", json=CHAT)
    assert slow.status == 200, slow.body
    messages = await server.call("GET", "/v1/contexts/w/messages")
    texts = [m["parts"][0].get("text") for m in messages.json()["messages"]]
    assert "one two three four five six" in texts and "slow answer" in texts


# -- the upstream's timeout -------------------------------------------------------------


async def test_stalled_upstream_gives_504(start: Start) -> None:
    server = await start(upstream_timeout=0.5)
    calls = [
        ("/v1/contexts/u/openai/chat/completions", CHAT),
        ("/v1/contexts/u/openai/chat/completions", {**CHAT, "stream": True}),
        ("/v1/chat/completions", CHAT),  # pass-through
    ]
    for path, body in calls:
        server.fake.script(Reply(text="too late", latency=5.0))
        answer = await server.call("POST", path, json=body)
        error = provider_error(answer, 504, "openai", "server_error")  # as proxy errors are
        assert error["code"] == "upstream_timeout"
        assert "0.5 s" in error["message"]
    server.fake.script(Reply(text="too late", latency=5.0))
    answer = await server.call(
        "POST",
        "/v1/contexts/u/anthropic/v1/messages",
        json=ANTHROPIC,
        headers={"anthropic-version": "2023-06-01"},
    )
    assert "0.5 s" in provider_error(answer, 504, "anthropic", "timeout_error")["message"]
    log = await server.call("GET", "/v1/contexts/u/messages")
    assert log.json()["messages"] == []  # a failed call stores nothing


# -- slow and stalled clients ---------------------------------------------------------------


async def test_stalled_bodies_are_cut_off_while_others_are_served(start: Start) -> None:
    server = await start(body_timeout=1.0)
    stalled = []
    for path in ("/v1/contexts/slow", "/v1/contexts/slow/messages", "/v1/chat/completions"):
        for _ in range(5):
            method = "PUT" if path == "/v1/contexts/slow" else "POST"
            stalled.append(
                await raw_request(
                    server.port,
                    f"{method} {path} HTTP/1.1\nHost: t\nContent-Type: application/json\n"
                    "Content-Length: 200\n",
                    b'{"message": ',  # ... and nothing more
                )
            )
    # everyone else is served while those connections hang
    assert (await server.call("PUT", "/v1/contexts/fine", json={})).status == 200
    results = await asyncio.gather(*(server.say("fine", f"m{n}") for n in range(20)))
    assert [r.status for r in results] == [201] * 20
    for index, (reader, writer) in enumerate(stalled):
        answer = parse_response(await read_to_eof(reader))  # then closed
        writer.close()
        if index < 10:
            body = assert_error(answer, 408, "request_timeout")
        else:  # the proxy route
            body = provider_error(answer, 408, "openai", "invalid_request_error")
            assert body["code"] == "request_timeout"
        assert "1 s" in body["message"]
    assert server.fake.requests == []


async def test_a_trickling_body_is_cut_off_too(start: Start) -> None:
    """Sending a byte now and then does not reset the clock: the whole body has
    ``body_timeout`` seconds."""
    server = await start(body_timeout=0.5)
    reader, writer = await raw_request(
        server.port,
        "PUT /v1/contexts/t HTTP/1.1\nHost: t\nContent-Type: application/json\n"
        "Content-Length: 10000\n",
    )
    received = b""
    for _ in range(600):  # a byte every 50 ms, far longer than the body timeout
        try:
            writer.write(b" ")
            await writer.drain()
        except ConnectionError:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(4096), 0.05)
        except TimeoutError:
            continue
        received += chunk
        if not chunk or b"\r\n\r\n" in received:
            break
    else:
        pytest.fail("the trickling client was never cut off")
    received += await read_to_eof(reader)
    writer.close()
    assert_error(parse_response(received), 408, "request_timeout")
    assert (await server.call("GET", "/v1/contexts/t")).status == 404  # nothing written
