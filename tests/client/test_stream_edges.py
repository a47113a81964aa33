"""The event stream at its edges: a context already tombstoned, the sync stream
inside a running event loop, handshake refusals that keep the server's words."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from loopback import serve_app

from fastpaca_core.client import (
    ApiError,
    AsyncClient,
    Client,
    ConnectionFailed,
    ContextNotFound,
    EventStream,
    StreamEvent,
    Unauthorized,
    ValidationError,
)

from .conftest import Fault, Server, _pipe, _serve
from .helpers import text


async def test_stream_of_a_tombstoned_context_from_its_version_ends(
    server: Server, cid: str
) -> None:
    """The server closes at once (1000 "tombstoned"): nothing is after the
    cursor, and nothing will be. The stream ends; it does not retry until it
    gives up with ConnectionFailed."""
    async with AsyncClient(server.url, backoff=0.01) as client:
        ctx = await client.context(cid, create=True)
        await ctx.append(text("user", "hi"))
        await ctx.delete()
        async with ctx.stream() as events:  # the default cursor: the current version
            got = await asyncio.wait_for(_all(events), timeout=10)
        assert got == []
        assert events.reconnects == 0
        version = (await ctx.get()).version
        async with ctx.stream(cursor=version) as events:
            assert await asyncio.wait_for(_all(events), timeout=10) == []
        async with ctx.stream(cursor=version - 1) as events:  # one before: the tombstone
            assert [e.type for e in await asyncio.wait_for(_all(events), 10)] == ["tombstoned"]


def test_sync_stream_of_a_tombstoned_context_ends(server: Server, cid: str) -> None:
    with Client(server.url, backoff=0.01) as client:
        ctx = client.context(cid, create=True)
        ctx.delete()
        with ctx.stream() as events:
            assert list(events) == []


async def _all(events: EventStream) -> list[StreamEvent]:
    return [event async for event in events]


async def test_sync_stream_works_inside_a_running_event_loop(server: Server, cid: str) -> None:
    """A notebook or an async framework runs a loop in the calling thread; the
    sync stream works there as the rest of the sync client does (blocking)."""
    with Client(server.url, backoff=0.01) as client:
        ctx = client.context(cid, create=True)
        ctx.append(text("user", "one"))
        with ctx.stream(cursor=0) as events:
            first = next(events)
            assert (first.type, first.seq) == ("message", 1)
            ctx.delete()
            rest = [e.type for e in events]
        assert rest[-1] == "tombstoned"


@pytest.mark.parametrize("cursor", [-1, 1.5])
async def test_a_cursor_that_is_not_a_version_is_refused_before_connecting(
    server: Server, cid: str, cursor: object
) -> None:
    async with AsyncClient(server.url, backoff=0.01) as client:
        ctx = await client.context(cid, create=True)
        with pytest.raises(ValidationError) as caught:
            async with ctx.stream(cursor=cursor) as events:  # type: ignore[arg-type]
                await asyncio.wait_for(events.__anext__(), 10)
        assert caught.value.field == "cursor"


async def test_a_refused_handshake_carries_the_servers_words(
    secured_server: Server, cid: str
) -> None:
    """aiohttp keeps no body of a refused upgrade; the client still raises the
    server's own code and message, not "HTTP 400"."""
    async with AsyncClient(secured_server.url, api_key="test-key", backoff=0.01) as client:
        ctx = await client.context("bad id", create=False)
        with pytest.raises(ValidationError) as bad:
            async with ctx.stream(cursor=0) as events:
                await asyncio.wait_for(events.__anext__(), 10)
        assert bad.value.field == "id" and "A-Z a-z 0-9" in str(bad.value)
        missing = await client.context(cid)
        with pytest.raises(ContextNotFound) as gone:
            async with missing.stream(cursor=0) as events:
                await asyncio.wait_for(events.__anext__(), 10)
        assert (gone.value.code, str(gone.value)) == (
            "context_not_found",
            f"Context {cid!r} not found",
        )
    async with AsyncClient(secured_server.url, api_key="wrong", backoff=0.01) as client:
        ctx = await client.context(cid)
        with pytest.raises(Unauthorized) as denied:
            async with ctx.stream(cursor=0) as events:
                await asyncio.wait_for(events.__anext__(), 10)
        assert denied.value.status == 401 and denied.value.code == "unauthorized"


async def test_a_settings_change_reaches_the_stream_as_a_context_event(
    server: Server, cid: str
) -> None:
    """A new budget changes ``needs_compaction`` but not the version: the server
    sends a second ``context`` event at the same version, and the client passes
    it on (it skips only a repeat of the figures it has yielded)."""
    async with AsyncClient(server.proxy_url, backoff=0.01) as client:
        ctx = await client.context(cid, budget=1000, policy={"strategy": "manual", "config": {}})
        await ctx.append(text("user", "hello there, how are you today?"))
        async with ctx.stream() as events:
            first = await asyncio.wait_for(events.__anext__(), 10)
            assert (first.type, first.version, first.data["needs_compaction"]) == (
                "context",
                1,
                False,
            )
            await client.context(cid, budget=10)
            tight = await asyncio.wait_for(events.__anext__(), 10)
            assert (tight.type, tight.version, tight.data["needs_compaction"]) == (
                "context",
                1,
                True,
            )
            server.cut()  # the replay after the reconnect repeats these figures: not yielded again
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(events.__anext__(), 1.0)
            await ctx.append(text("user", "again"))
            after = [await asyncio.wait_for(events.__anext__(), 10) for _ in range(2)]
            assert [(e.type, e.version) for e in after] == [("message", 2), ("context", 2)]
            assert events.reconnects == 1


@pytest.fixture
def one_stream_server(tmp_path: Path) -> Iterator[Server]:
    """A server that serves one websocket stream at a time."""
    yield from _serve(tmp_path, max_streams=1)


async def test_giving_up_says_what_the_last_attempt_met(
    one_stream_server: Server, cid: str
) -> None:
    """Refused with 503 at every attempt (the server's streams are all taken),
    the stream gives up with ConnectionFailed naming the server's reason."""
    async with AsyncClient(one_stream_server.url, backoff=0.01, max_retries=1) as client:
        ctx = await client.context(cid, create=True)
        async with ctx.stream() as first:
            assert (await asyncio.wait_for(first.__anext__(), 10)).type == "context"
            with pytest.raises(ConnectionFailed) as caught:
                async with ctx.stream() as second:
                    await asyncio.wait_for(second.__anext__(), 10)
    message = str(caught.value)
    assert "gave up after 2 attempts" in message
    assert "503 too_many_streams" in message, message
    assert isinstance(caught.value.__cause__, ApiError)
    assert caught.value.__cause__.code == "too_many_streams"


@pytest.mark.parametrize("dots", [".", ".."])
async def test_ids_made_of_dots_stream_their_own_context(server: Server, dots: str) -> None:
    """``.`` and ``..`` are valid ids; the stream's URL keeps them percent-encoded
    as the REST calls do, so that no URL normalisation turns them into path
    steps (``/v1/contexts/../stream`` is another route)."""
    async with AsyncClient(server.url, backoff=0.01, max_retries=0) as client:
        ctx = await client.context(dots, create=True)
        await ctx.append(text("user", f"in {dots!r}"))
        async with ctx.stream(cursor=0) as events:
            event = await asyncio.wait_for(events.__anext__(), 10)
        assert (event.type, event.seq) == ("message", 1)
        assert event.message is not None
        assert event.message["parts"][0]["text"] == f"in {dots!r}"


class ForwardProxy:
    """A plain HTTP forward proxy: takes absolute-form requests, notes each
    connection's first request line, and pipes the bytes to the target."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.split(b" ", 2)
        url = urlsplit(target.decode())
        self.seen.append(f"{method.decode()} {url.path}")
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
        origin_form = url.path + (f"?{url.query}" if url.query else "")
        up_writer.write(b" ".join((method, origin_form.encode(), version)) + b"\r\n" + rest)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def test_the_stream_goes_through_the_proxy_the_rest_calls_use(
    server: Server, cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx takes HTTP_PROXY / NO_PROXY from the environment; the websocket
    must go the same way, or a client that can reach the server only through
    its proxy gets every REST call and no stream."""
    proxy = ForwardProxy()
    listening = server.thread.run(_start(proxy.handle))
    port = listening.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    try:
        async with AsyncClient(server.url, backoff=0.01, max_retries=0) as client:
            ctx = await client.context(cid, create=True)
            async with ctx.stream() as events:
                assert (await asyncio.wait_for(events.__anext__(), 10)).type == "context"
        assert f"PUT /v1/contexts/{cid}" in proxy.seen
        assert f"GET /v1/contexts/{cid}/stream" in proxy.seen, proxy.seen
    finally:
        listening.close()


async def _start(handle: Any) -> asyncio.Server:
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_netrc_entry_for_the_host_does_not_break_the_keyed_stream(
    secured_server: Server, cid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proxies come from the environment, credentials do not: a ``.netrc``
    line for the server's host must not clash with the API key's header."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    async with AsyncClient(secured_server.url, api_key="test-key", backoff=0.01) as client:
        ctx = await client.context(cid, create=True)
        async with ctx.stream() as events:
            assert (await asyncio.wait_for(events.__anext__(), 10)).type == "context"


async def test_a_dropped_stream_outlasts_a_restart_of_the_server(server: Server, cid: str) -> None:
    """A restart (a deploy) refuses connections for seconds. The stream keeps
    reconnecting through it, with backoff, for ``reconnect_timeout``; the
    request retries (``max_retries``, a second or two) bound only the first
    connection."""
    async with (
        AsyncClient(server.proxy_url, backoff=0.01, max_backoff=0.05) as client,
        AsyncClient(server.url) as direct,  # a writer that does not go through the outage
    ):
        ctx = await client.context(cid, create=True)
        async with ctx.stream(cursor=0) as events:
            assert (await asyncio.wait_for(events.__anext__(), 10)).type == "context"
            outage: list[Fault] = ["503"] * 12
            server.inject(*outage)  # cut, then twelve refused attempts
            await (await direct.context(cid)).append(text("user", "during the outage"))
            event = await asyncio.wait_for(events.__anext__(), 20)
            assert (event.type, event.seq) == ("message", 1)
            assert events.reconnects == 1
            assert not server.proxy.faults


async def test_a_reconnect_gives_up_after_reconnect_timeout(server: Server, cid: str) -> None:
    async with AsyncClient(server.proxy_url, backoff=0.01, max_backoff=0.05) as client:
        ctx = await client.context(cid, create=True)
        async with ctx.stream(cursor=0, reconnect_timeout=0.5) as events:
            assert (await asyncio.wait_for(events.__anext__(), 10)).type == "context"
            endless: list[Fault] = ["503"] * 1000
            server.inject(*endless)
            with pytest.raises(ConnectionFailed) as caught:
                await asyncio.wait_for(events.__anext__(), 20)
        assert "store_unavailable" in str(caught.value)


def test_leaving_a_sync_stream_by_break_leaves_nothing_open(
    server: Server, cid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``for event in ctx.stream(): ... break`` without ``with``: once the
    stream is garbage its connection is closed, with no "Unclosed client
    session" error and no unclosed event loop."""
    with Client(server.url, backoff=0.01) as client:
        ctx = client.context(cid, create=True)
        for event in ctx.stream():
            assert event.type == "context"
            break
        gc.collect()
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()], caplog.text


async def test_a_server_that_accepts_and_drops_at_once_is_given_up_on(cid: str) -> None:
    """A server that takes each websocket and closes it before any event (its
    store is down): the outage is timed from its first failed attempt, not
    from each new connection, so ``reconnect_timeout`` ends it."""
    served: list[int] = []

    async def flaky(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if not served:  # the first connection works: one event, then the store fails
            await ws.send_json(
                {"type": "context", "version": 0, "needs_compaction": False, "used_tokens": 0}
            )
        served.append(1)
        await ws.close(code=aiohttp.WSCloseCode.INTERNAL_ERROR, message=b"store_unavailable")
        return ws

    app = web.Application()
    app.router.add_get("/v1/contexts/{id}/stream", flaky)
    runner, port = await serve_app(app)
    try:
        async with AsyncClient(
            f"http://127.0.0.1:{port}", backoff=0.01, max_backoff=0.05, max_retries=1
        ) as client:
            ctx = await client.context(cid)
            async with ctx.stream(cursor=0, reconnect_timeout=0.5) as events:
                assert (await asyncio.wait_for(events.__anext__(), 10)).type == "context"
                with pytest.raises(ConnectionFailed) as caught:
                    await asyncio.wait_for(events.__anext__(), 10)
        assert "closed before any event" in str(caught.value)
        assert len(served) > 2
    finally:
        await runner.cleanup()
