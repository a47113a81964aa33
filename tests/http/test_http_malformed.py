"""Requests aiohttp cannot read as HTTP get the JSON error shape too, not plain text."""

from __future__ import annotations

import asyncio
import logging

import pytest
from http_support import Serve, raw_exchange

from fastpaca_core.jsonutil import loads

MALFORMED = {
    "a request line that is not HTTP": b"HELLO THERE\r\n\r\n",
    "a header without a colon": b"GET /health/live HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n",
    "a header line too long": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"a" * 20_000
    + b"\r\n\r\n",
    "a bad chunked body": b"POST /v1/contexts/x/messages HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n",
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_unreadable_requests_get_the_json_error_shape(
    serve: Serve, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    api = await serve()
    port = int(api.base.rsplit(":", 1)[1])
    caplog.set_level(logging.DEBUG)
    status, headers, body = await raw_exchange(port, MALFORMED[case])
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/json")
    error = loads(body)
    assert set(error) == {"error", "message"}
    assert error["error"] in {"invalid_request", "payload_too_large"}
    assert error["message"].startswith("The request could not be read as HTTP")
    # a client's bytes, not our fault: one line, no error with a traceback; bytes
    # that are not HTTP at all (a scanner) at debug level, as aiohttp has them
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    logged = [r for r in caplog.records if r.getMessage() == "unreadable request"]
    level = logging.DEBUG if case == "a request line that is not HTTP" else logging.INFO
    assert len(logged) == 1 and logged[0].levelno == level
    assert logged[0].fields["status"] == status  # type: ignore[attr-defined]
    # the server is fine afterwards
    async with api.session.get(api.base + "/health/live") as resp:
        assert resp.status == 200


async def test_a_client_leaving_mid_body_is_one_info_line(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that closes its connection before its declared body arrived:
    nobody is left to answer, and it is no fault of ours (no error, no
    traceback); nothing is stored."""
    api = await serve()
    async with api.session.put(api.base + "/v1/contexts/left", json={}) as resp:
        assert resp.status == 200
    port = int(api.base.rsplit(":", 1)[1])
    caplog.set_level(logging.DEBUG)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/contexts/left/messages HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    for _ in range(100):  # the server notices the closed connection
        if any(r.getMessage() == "client left mid-body" for r in caplog.records):
            break
        await asyncio.sleep(0.02)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    left = [r for r in caplog.records if r.getMessage() == "client left mid-body"]
    assert len(left) == 1 and left[0].levelno == logging.INFO
    async with api.session.get(api.base + "/v1/contexts/left") as resp:
        assert (await resp.json())["last_seq"] == 0


async def test_an_unknown_expectation_is_ignored_and_100_continue_is_answered(
    serve: Serve,
) -> None:
    """``Expect``: aiohttp refuses anything but ``100-continue`` with a
    plain-text 417 before our middleware runs; the server ignores it instead
    (RFC 9110 allows either) and still answers ``100-continue``."""
    api = await serve()
    port = int(api.base.rsplit(":", 1)[1])
    body = b"{}"
    for expect in (b"something", b"100-continue"):
        raw = (
            b"PUT /v1/contexts/expect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Expect: " + expect + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        data = await reader.read()
        writer.close()
        if expect == b"100-continue":
            assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            data = data.split(b"\r\n\r\n", 1)[1]
        head, _, answer = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert loads(answer)["id"] == "expect"
