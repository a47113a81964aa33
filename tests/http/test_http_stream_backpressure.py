"""The websocket stream against consumers that stop reading.

A raw socket that does the websocket handshake and then never reads is the
stalled consumer: once the kernel buffers fill, the server's sends wait on it.
Such a consumer is dropped within the idle timeout (its slot freed), holds a
bounded number of buffered bytes meanwhile, does not hold up shutdown, and a
reset from it is no server error. Replay reads the store in pages bounded in
bytes as well as rows.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from http_support import Api, Serve
from loopback import serve_app

from fastpaca_core import events as events_module
from fastpaca_core.events import Event, EventBus, MessageData, Subscription
from fastpaca_core.http import create_app
from fastpaca_core.http import replay as replay_module
from fastpaca_core.http.state import STREAMS
from fastpaca_core.model import StoredMessage
from fastpaca_core.settings import Settings

WAIT = 5.0
BIG = 200_000  # characters of text per big message
DEADLINE = 10.0  # generous: what "bounded" means here


def _port(api: Api) -> int:
    return int(api.base.rsplit(":", 1)[1])


async def stalled_consumer(port: int, path: str) -> socket.socket:
    """A websocket client that completes the handshake and then never reads."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:  # byte by byte: nothing past the head is read
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), WAIT)
        assert chunk, head
        head += chunk
    assert b" 101 " in head.split(b"\r\n", 1)[0], head
    return sock


def pong_frame() -> bytes:
    """An empty, masked pong: a client frame that shows the client is there."""
    return bytes([0x8A, 0x80]) + os.urandom(4)


async def fill(api: Api, cid: str, count: int) -> None:
    """Append ``count`` big messages: more than the kernel buffers of one socket hold."""
    for i in range(count):
        await api.say(cid, f"{i}" + "y" * BIG, token_count=1)


async def stream_slot_freed(api: Api, cid: str) -> bool:
    """Whether a new stream gets in (the server allows one) before the deadline."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            ws = await api.ws(f"/v1/contexts/{cid}/stream")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 503
            await asyncio.sleep(0.1)
            continue
        await ws.close()
        return True
    return False


@pytest.mark.parametrize("chatty", [False, True], ids=["silent", "sending-pongs"])
async def test_a_stalled_consumer_is_dropped_and_frees_its_slot(
    serve: Serve, cid: str, chatty: bool, caplog: pytest.LogCaptureFixture
) -> None:
    api = await serve(max_streams=1, ws_idle_timeout=0.5, ws_ping_interval=0.2)
    await api.create(cid, policy={"strategy": "manual"}, token_budget=10**9)
    sock = await stalled_consumer(_port(api), f"/v1/contexts/{cid}/stream")
    loop = asyncio.get_running_loop()

    async def keep_talking() -> None:  # the client is there; it just does not read
        while True:
            await loop.sock_sendall(sock, pong_frame())
            await asyncio.sleep(0.05)

    talker = asyncio.create_task(keep_talking()) if chatty else None
    try:
        with caplog.at_level(logging.INFO, logger="fastpaca.http"):
            await fill(api, cid, 30)
            assert await stream_slot_freed(api, cid), "the stalled consumer kept its slot"
        if chatty:  # not silent, so not the idle timeout: the stalled send dropped it
            assert any("slow consumer" in r.getMessage() for r in caplog.records)
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        metrics = (await api.get("/metrics")).body.decode()
        assert 'status="500"' not in metrics  # the dropped stream is no server error
    finally:
        if talker is not None:
            talker.cancel()
            await asyncio.gather(talker, return_exceptions=True)
        sock.close()


async def test_a_slow_reader_of_a_large_frame_is_not_dropped(
    serve: Serve, cid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that keeps taking the bytes of a frame larger than the kernel's
    socket buffers, however slowly, is kept past the idle timeout: only a
    client that takes nothing is dropped."""
    size = 8_000_000  # more than the kernel's socket buffers hold
    api = await serve(ws_idle_timeout=0.6, ws_ping_interval=0.2)
    await api.create(cid, policy={"strategy": "manual"}, token_budget=10**9)
    sock = await stalled_consumer(_port(api), f"/v1/contexts/{cid}/stream")
    loop = asyncio.get_running_loop()
    try:
        with caplog.at_level(logging.INFO, logger="fastpaca.http"):
            message = {"role": "user", "parts": [{"type": "text", "text": "z" * size}]}
            await api.engine.append(cid, {**message, "token_count": 1})  # past the body limit
            received = 0
            while received < 1_200_000:  # ~400 KB/s for three seconds: five idle timeouts
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), WAIT)
                assert chunk, f"cut after {received} bytes"
                received += len(chunk)
                await loop.sock_sendall(sock, pong_frame())
                await asyncio.sleep(len(chunk) / 400_000)
        assert not any("slow consumer" in r.getMessage() for r in caplog.records)
    finally:
        sock.close()


async def test_a_stalled_consumer_buffers_a_bounded_number_of_bytes(
    api: Api, cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = api.engine.bus
    original = bus.subscribe
    subs: list[Subscription] = []

    def spy(context_id: str | None = None, *args: Any, **kw: Any) -> Subscription:
        sub = original(context_id, *args, **kw)
        subs.append(sub)
        return sub

    monkeypatch.setattr(bus, "subscribe", spy)
    await api.create(cid, policy={"strategy": "manual"}, token_budget=10**9)
    sock = await stalled_consumer(_port(api), f"/v1/contexts/{cid}/stream")
    try:
        await fill(api, cid, 60)  # ~12 MB, well past the kernel buffers and the bound
        (sub,) = subs
        buffered = sub.queue.qsize() * BIG
        assert buffered <= events_module.MAX_QUEUED_BYTES + BIG
    finally:
        sock.close()


async def test_a_consumer_that_pauses_then_reads_gets_every_event(
    api: Api, cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events dropped from its full buffer are read back from the store, in order."""
    overflows: list[Subscription] = []
    overflow = Subscription._overflow

    def counted(sub: Subscription, newest: Event) -> None:
        overflows.append(sub)
        overflow(sub, newest)

    monkeypatch.setattr(Subscription, "_overflow", counted)
    bus = api.engine.bus
    subscribe = bus.subscribe

    def small(context_id: str | None = None, *args: Any, **kw: Any) -> Subscription:
        # a buffer of two events: what the sockets take on the way (the kernel's
        # buffers grow to several MB on loopback) cannot keep it from overflowing
        kw.setdefault("max_bytes", 2 * BIG)
        return subscribe(context_id, *args, **kw)

    monkeypatch.setattr(bus, "subscribe", small)
    await api.create(cid, policy={"strategy": "manual"}, token_budget=10**9)
    # aiohttp's client stops reading its socket while the app does not receive
    ws = await api.ws(f"/v1/contexts/{cid}/stream")
    assert (await ws.receive_json(timeout=WAIT))["type"] == "context"
    await fill(api, cid, 80)  # ~16 MB: past the sockets' buffers and the bound
    versions: list[int] = []
    while not versions or versions[-1] < 80:
        msg = await ws.receive(timeout=WAIT)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        event = msg.json()
        if event["type"] in ("message", "gap", "compaction"):
            assert event["type"] == "message", event
            versions.append(event["version"])
    assert versions == list(range(1, 81))
    assert overflows, "the buffer never overflowed: the test proves nothing"
    await ws.close()


def _spy_reads(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[list[StoredMessage]]:
    """Every answer of the store's ``read_messages`` from now on."""
    store = api.engine.store
    original = store.read_messages
    answers: list[list[StoredMessage]] = []

    async def spy(
        context_id: str, from_seq: int, to_seq: int, max_bytes: int | None = None
    ) -> list[StoredMessage]:
        rows = await original(context_id, from_seq, to_seq, max_bytes)
        answers.append(rows)
        return rows

    monkeypatch.setattr(store, "read_messages", spy)
    return answers


def _text_bytes(rows: list[StoredMessage]) -> int:
    return sum(len(part.get("text", "")) for row in rows for part in row.parts)


async def _replay_all(api: Api, cid: str, until: int) -> list[int]:
    ws = await api.ws(f"/v1/contexts/{cid}/stream?cursor=0")
    versions: list[int] = []
    while True:
        event = await ws.receive_json(timeout=WAIT)
        if event["type"] == "context" and event["version"] >= until:
            break
        assert event["type"] == "message", event
        versions.append(event["version"])
    await ws.close()
    return versions


async def test_replay_reads_pages_bounded_in_bytes(
    api: Api, cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.create(cid, policy={"strategy": "manual"}, token_budget=10**9)
    await fill(api, cid, 24)  # ~4.8 MB of history
    answers = _spy_reads(api, monkeypatch)
    assert await _replay_all(api, cid, 24) == list(range(1, 25))
    # every read stops at the row that brings it to PAGE_BYTES
    assert len(answers) > 1
    assert max(_text_bytes(rows) for rows in answers) <= replay_module.PAGE_BYTES + BIG


async def test_replay_pages_hold_at_least_one_row(
    api: Api, cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.create(cid, policy={"strategy": "manual"}, token_budget=10**9)
    for i in range(6):
        await api.say(cid, f"m{i}" + "z" * 5000, token_count=1)
    monkeypatch.setattr(replay_module, "PAGE_BYTES", 100)  # smaller than any row
    answers = _spy_reads(api, monkeypatch)
    assert await _replay_all(api, cid, 6) == list(range(1, 7))
    assert [len(rows) for rows in answers if rows] == [1] * 6


async def test_a_client_reset_during_a_stalled_send_is_no_server_error(
    api: Api, cid: str, caplog: pytest.LogCaptureFixture
) -> None:
    await api.create(cid, policy={"strategy": "manual"}, token_budget=10**9)
    sock = await stalled_consumer(_port(api), f"/v1/contexts/{cid}/stream")
    with caplog.at_level(logging.INFO):
        await fill(api, cid, 30)
        await asyncio.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, with the server's send waiting on the full socket
        streams = api.app[STREAMS]
        deadline = time.monotonic() + DEADLINE
        while streams.open and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not streams.open
        await asyncio.sleep(0.1)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    metrics = (await api.get("/metrics")).body.decode()
    assert 'status="500"' not in metrics


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[tuple[Api, Any]]:
    """A server this test shuts down itself (``shutdown_timeout`` 2 s)."""
    settings = Settings(store=f"sqlite:///{tmp_path / 'own.db'}", port=0, shutdown_timeout=2.0)
    app = create_app(settings)
    runner, port = await serve_app(app, shutdown_timeout=settings.shutdown_timeout)
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{port}", session, app, runner), runner


async def test_shutdown_is_not_held_up_by_a_stalled_consumer(
    own_server: tuple[Api, Any], cid: str
) -> None:
    api, runner = own_server
    await api.create(cid, policy={"strategy": "manual"}, token_budget=10**9)
    sock = await stalled_consumer(_port(api), f"/v1/contexts/{cid}/stream")
    try:
        await fill(api, cid, 30)
        started = time.monotonic()
        await asyncio.wait_for(runner.cleanup(), 2.0 + DEADLINE)
        assert time.monotonic() - started < 2.0 + DEADLINE
    finally:
        sock.close()


async def test_subscription_is_bounded_in_bytes() -> None:
    def message(version: int, text: str) -> Event:
        row = StoredMessage(
            seq=version,
            role="user",
            parts=[{"type": "text", "text": text}],
            metadata={},
            token_count=1,
            cum_tokens=version,
            version=version,
            inserted_at=datetime.now(UTC),
        )
        return Event("c", "message", version, MessageData(row))

    bus = EventBus()
    with bus.subscribe("c", max_bytes=8_000) as sub:
        bus.publish([message(1, "x" * 50_000)])  # one event always fits
        assert sub.queue.qsize() == 1 and not sub.overflowed
        assert (await sub.get()).version == 1
        bus.publish([message(v, "x" * 3000) for v in range(2, 5)])
        assert sub.queue.qsize() == 3 and not sub.overflowed
        bus.publish([message(5, "x" * 3000)])  # past the bound: the rest dropped
        assert sub.overflowed and sub.queue.qsize() == 1  # the newest kept, to wake a getter
        assert sub.get_nowait().version == 5 and sub.empty()
        sub.overflowed = False  # as the consumer does before reading the store
        bus.publish([message(v, "x" * 3000) for v in range(6, 9)])
        assert [sub.get_nowait().version for _ in range(3)] == [6, 7, 8]
        assert sub.empty() and not sub.overflowed
        waiting = asyncio.ensure_future(sub.get())  # a consumer waiting for the next event
        await asyncio.sleep(0)
        bus.publish([message(9, "x" * 3000), message(10, "x" * 9000)])  # overflows at once
        assert (await asyncio.wait_for(waiting, 1)).version == 10 and sub.overflowed
