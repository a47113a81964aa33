"""The websocket stream against the real server: order, replay, reconnection, the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fastpaca_core.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    ContextNotFound,
    EventStream,
    StreamEvent,
)

from .conftest import Server
from .helpers import text


@pytest.fixture
async def client(server: Server) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.proxy_url, backoff=0.01) as opened:
        yield opened


async def take(events: EventStream, count: int) -> list[StreamEvent]:
    """The next ``count`` events that are not ``context`` snapshots."""
    out: list[StreamEvent] = []
    while len(out) < count:
        event = await asyncio.wait_for(events.__anext__(), timeout=10)
        if event.type != "context":
            out.append(event)
    return out


async def test_events_arrive_in_order_and_end_with_the_tombstone(
    client: AsyncClient, cid: str
) -> None:
    ctx = await client.context(cid, policy={"strategy": "manual", "config": {}})
    await ctx.append(text("user", "before"))
    async with ctx.stream() as events:  # from the current version: "before" is not replayed
        first = await asyncio.wait_for(events.__anext__(), timeout=10)
        assert first.type == "context" and first.version == 1
        assert first.data["used_tokens"] > 0
        await ctx.append_batch([text("user", "a"), text("assistant", "b")])
        await ctx.compact([text("system", "summary")])
        await ctx.delete()
        got = await take(events, 4)
        assert [(e.type, e.version) for e in got] == [
            ("message", 2),
            ("message", 3),
            ("compaction", 4),
            ("tombstoned", 5),
        ]
        assert got[0].seq == 2 and got[0].message is not None
        assert got[0].message["parts"] == [{"type": "text", "text": "a"}]
        assert got[2].data["range"] == {"from_seq": 1, "to_seq": 3}
        rest = [event async for event in events]  # the stream ends after the tombstone
        assert all(e.type == "context" for e in rest)
        assert events.version == 5


async def test_cursor_replays_history_without_messages_when_asked(
    client: AsyncClient, cid: str
) -> None:
    ctx = await client.context(cid, create=True)
    await ctx.append_batch([text("user", f"m{i}") for i in range(3)])
    async with ctx.stream(cursor=1, include_messages=False) as events:
        got = await take(events, 2)
    assert [(e.type, e.seq) for e in got] == [("message", 2), ("message", 3)]
    assert all(e.message is None for e in got)


async def test_reconnects_from_the_last_version_without_loss(
    server: Server, client: AsyncClient, cid: str
) -> None:
    ctx = await client.context(cid, create=True)
    async with ctx.stream(cursor=0) as events:
        await ctx.append(text("user", "one"))
        await ctx.append(text("user", "two"))
        assert [e.seq for e in await take(events, 2)] == [1, 2]
        server.cut()  # the connection drops ...
        await ctx.append_batch([text("user", "three"), text("user", "four")])  # ... meanwhile
        await ctx.append(text("user", "five"))
        got = await take(events, 3)
        assert [(e.type, e.seq, e.version) for e in got] == [
            ("message", 3, 3),
            ("message", 4, 4),
            ("message", 5, 5),
        ]
        assert events.reconnects == 1
        server.cut()
        await ctx.append(text("user", "six"))
        assert [e.seq for e in await take(events, 1)] == [6]
        assert events.reconnects == 2


async def test_cursor_ahead_of_the_server_gets_a_reset(client: AsyncClient, cid: str) -> None:
    ctx = await client.context(cid, create=True)
    await ctx.append(text("user", "one"))
    async with ctx.stream(cursor=50) as events:
        reset = await asyncio.wait_for(events.__anext__(), timeout=10)
        assert (reset.type, reset.version) == ("reset", 1)
        await ctx.append(text("user", "two"))
        assert [(e.type, e.version) for e in await take(events, 1)] == [("message", 2)]


async def test_stream_of_a_missing_context(client: AsyncClient, cid: str) -> None:
    ctx = await client.context(cid)
    with pytest.raises(ContextNotFound):
        async with ctx.stream() as events:
            await events.__anext__()
    with pytest.raises(ContextNotFound):  # with an explicit cursor the handshake answers 404
        async with ctx.stream(cursor=0) as events:
            await events.__anext__()


async def test_pings_are_hidden_unless_asked(pinging_server: Server, cid: str) -> None:
    async with AsyncClient(pinging_server.url) as client:
        ctx = await client.context(cid, create=True)
        async with ctx.stream(include_pings=True) as events:
            kinds = [(await asyncio.wait_for(events.__anext__(), 10)).type for _ in range(3)]
        assert kinds == ["context", "ping", "ping"]
        async with ctx.stream() as events:
            assert (await events.__anext__()).type == "context"
            await asyncio.sleep(0.3)  # a few pings go by, unseen
            await ctx.append(text("user", "after the pings"))
            event = await asyncio.wait_for(events.__anext__(), 10)
            assert (event.type, event.seq) == ("message", 1)


def test_sync_stream_reconnects(server: Server, cid: str) -> None:
    with Client(server.proxy_url, backoff=0.01) as client:
        ctx = client.context(cid, create=True)
        ctx.append(text("user", "one"))
        with ctx.stream(cursor=0) as events:
            seen = []
            for event in events:
                if event.type != "message":
                    continue
                seen.append(event.seq)
                if event.seq == 1:
                    server.cut()
                    ctx.append(text("user", "two"))
                    ctx.append(text("user", "three"))
                if event.seq == 3:
                    ctx.delete()
            assert seen == [1, 2, 3]
            assert events.reconnects == 1 and events.version == 4


async def test_a_timed_out_read_leaves_the_stream_usable(client: AsyncClient, cid: str) -> None:
    ctx = await client.context(cid, create=True)
    async with ctx.stream() as events:
        assert (await events.__anext__()).type == "context"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(events.__anext__(), timeout=0.05)
        await ctx.append(text("user", "later"))
        assert [e.seq for e in await take(events, 1)] == [1]
        assert events.reconnects == 0


async def test_an_event_larger_than_4_mib_is_delivered(roomy_server: Server, cid: str) -> None:
    """aiohttp refuses websocket messages past 4 MiB by default; a stored
    message may be larger (the proxy takes prompts of up to 32 MiB)."""
    async with AsyncClient(roomy_server.url, backoff=0.01, max_retries=0) as client:
        ctx = await client.context(cid, policy={"strategy": "manual", "config": {}})
        await ctx.append(text("user", "z" * (5 * 1024 * 1024)))
        async with ctx.stream(cursor=0) as events:
            (event,) = await take(events, 1)
    assert event.type == "message" and event.message is not None
    assert len(event.message["parts"][0]["text"]) == 5 * 1024 * 1024


async def test_a_handshake_that_never_answers_fails_within_the_client_timeout(
    cid: str,
) -> None:
    """A server that takes the connection and never answers: the stream gives
    up after the client's timeout per attempt, not aiohttp's 300 s."""

    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # never answers; returns when the client goes

    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = mute.sockets[0].getsockname()[1]
    try:
        async with AsyncClient(f"http://127.0.0.1:{port}", timeout=0.3, max_retries=1) as client:
            ctx = await client.context(cid)  # no option: no request
            with pytest.raises(ConnectionFailed):
                async with ctx.stream(cursor=0) as events:
                    await asyncio.wait_for(events.__anext__(), timeout=20)
        assert len(writers) == 2  # the first attempt and its one retry
    finally:
        mute.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        await mute.wait_closed()
