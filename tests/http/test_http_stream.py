"""The websocket stream: replay, live order, heartbeat, tombstone, reconnect, gaps, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from http_support import Api, Serve, text_message

from fastpaca_core.engine import Engine
from fastpaca_core.events import Event, EventBus, Subscription
from fastpaca_core.stores.postgres import PostgresStore

WAIT = 5.0


async def next_event(ws: aiohttp.ClientWebSocketResponse, *, skip_pings: bool = True) -> Any:
    while True:
        msg = await ws.receive(timeout=WAIT)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return msg
        data = msg.json()
        if skip_pings and data["type"] == "ping":
            continue
        return data


async def collect(ws: aiohttp.ClientWebSocketResponse, until_version: int) -> list[Any]:
    """Events up to (and including) the ``context`` event for ``until_version``."""
    events: list[Any] = []
    while True:
        event = await next_event(ws)
        assert isinstance(event, dict), event
        events.append(event)
        if event["type"] == "context" and event["version"] >= until_version:
            return events


def changes(events: list[Any]) -> list[Any]:
    return [e for e in events if e["type"] != "context"]


def assert_ordered(events: list[Any]) -> None:
    """Change events have strictly increasing versions; ``context`` repeats the last one."""
    last = -1
    for event in events:
        if event["type"] == "context":
            assert event["version"] == last or last == -1
            last = event["version"]
        else:
            assert event["version"] > last, events
            last = event["version"]


async def test_replay_from_cursor_then_live(any_api: Api, cid: str) -> None:
    await any_api.create(cid, policy={"strategy": "manual"})
    for i in range(3):
        await any_api.say(cid, f"m{i}", token_count=5)
    await any_api.post(f"/v1/contexts/{cid}/compact", json={"replacement": [], "up_to_seq": 2})
    ws = await any_api.ws(f"/v1/contexts/{cid}/stream?cursor=1")
    events = await collect(ws, 4)
    assert [(e["type"], e["version"]) for e in events] == [
        ("message", 2),
        ("message", 3),
        ("compaction", 4),
        ("context", 4),
    ]
    assert events[0]["seq"] == 2
    assert events[0]["message"]["parts"] == [{"type": "text", "text": "m1"}]
    assert events[0]["message"]["seq"] == 2 and "inserted_at" in events[0]["message"]
    assert events[2]["range"] == {"from_seq": 1, "to_seq": 2}
    assert events[3] == {
        "type": "context",
        "version": 4,
        "needs_compaction": False,
        "used_tokens": 5,
    }
    await any_api.say(cid, "live", token_count=5)
    live = await collect(ws, 5)
    assert [(e["type"], e["version"]) for e in live] == [("message", 5), ("context", 5)]
    assert live[0]["message"]["parts"][0]["text"] == "live"
    await ws.close()


async def test_live_events_in_order_under_concurrency(any_api: Api, cid: str) -> None:
    await any_api.create(cid, token_budget=1_000_000)
    ws = await any_api.ws(f"/v1/contexts/{cid}/stream")
    first = await next_event(ws)
    assert first == {"type": "context", "version": 0, "needs_compaction": False, "used_tokens": 0}
    await asyncio.gather(*(any_api.say(cid, f"m{i}", token_count=1) for i in range(15)))
    events = await collect(ws, 15)
    assert_ordered(events)
    assert [e["version"] for e in changes(events)] == list(range(1, 16))
    assert [e["seq"] for e in changes(events)] == list(range(1, 16))
    await ws.close()


async def test_appends_racing_the_connect_are_neither_lost_nor_doubled(api: Api, cid: str) -> None:
    await api.create(cid, token_budget=1_000_000)
    for i in range(10):
        await api.say(cid, f"before{i}", token_count=1)
    writers = asyncio.gather(*(api.say(cid, f"during{i}", token_count=1) for i in range(20)))
    ws = await api.ws(f"/v1/contexts/{cid}/stream?cursor=0")
    await writers
    events = await collect(ws, 30)
    assert_ordered(events)
    assert [e["version"] for e in changes(events)] == list(range(1, 31))
    await ws.close()


async def test_include_messages_false_omits_bodies(api: Api, cid: str) -> None:
    await api.create(cid)
    await api.say(cid, "secret")
    ws = await api.ws(f"/v1/contexts/{cid}/stream?cursor=0&include_messages=false")
    events = await collect(ws, 1)
    assert events[0] == {"type": "message", "version": 1, "seq": 1}
    await api.say(cid, "more")
    live = await collect(ws, 2)
    assert live[0] == {"type": "message", "version": 2, "seq": 2}
    await ws.close()


async def test_heartbeat_and_idle_drop(serve: Serve, cid: str) -> None:
    api = await serve(ws_ping_interval=0.05, ws_idle_timeout=0.4)
    await api.create(cid)
    ws = await api.ws(f"/v1/contexts/{cid}/stream")
    assert (await next_event(ws))["type"] == "context"
    assert await next_event(ws, skip_pings=False) == {"type": "ping"}
    # a client that answers stays connected past the idle timeout
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.8
    while loop.time() < deadline:
        msg = await ws.receive(timeout=WAIT)
        assert msg.type == aiohttp.WSMsgType.TEXT
        await ws.send_json({"type": "pong"})
    assert not ws.closed
    # a silent client is dropped
    started = loop.time()
    while True:
        msg = await ws.receive(timeout=WAIT)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4408
    assert loop.time() - started < 2.0


async def test_tombstone_then_close(any_api: Api, cid: str) -> None:
    await any_api.create(cid)
    await any_api.say(cid, "hi")
    ws = await any_api.ws(f"/v1/contexts/{cid}/stream?cursor=1")
    assert (await next_event(ws))["type"] == "context"
    assert (await any_api.delete(f"/v1/contexts/{cid}")).status == 204
    assert await next_event(ws) == {"type": "tombstoned", "version": 2}
    closing = await next_event(ws)
    assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1000
    # connecting afterwards replays up to the tombstone, then closes too
    again = await any_api.ws(f"/v1/contexts/{cid}/stream?cursor=0")
    assert [(await next_event(again))["type"] for _ in range(2)] == ["message", "tombstoned"]
    assert (await next_event(again)).type == aiohttp.WSMsgType.CLOSE
    # a cursor at the tombstone: nothing comes after it but the close (API.md:
    # "events after cursor"); the tombstone is not repeated
    late = await any_api.ws(f"/v1/contexts/{cid}/stream?cursor=2")
    closed = await next_event(late)
    assert closed.type == aiohttp.WSMsgType.CLOSE and late.close_code == 1000
    # one past it (a cursor from elsewhere): the tombstone alone, then the close
    # (a `reset` to its version first would send that version twice: API.md,
    # "strictly increasing version")
    ahead = await any_api.ws(f"/v1/contexts/{cid}/stream?cursor=5")
    assert await next_event(ahead) == {"type": "tombstoned", "version": 2}
    closed = await next_event(ahead)
    assert closed.type == aiohttp.WSMsgType.CLOSE and ahead.close_code == 1000


async def test_reconnect_from_last_version_without_loss(any_api: Api, cid: str) -> None:
    await any_api.create(cid, token_budget=1_000_000)
    ws = await any_api.ws(f"/v1/contexts/{cid}/stream")
    await next_event(ws)
    for i in range(3):
        await any_api.say(cid, f"a{i}", token_count=1)
    seen = changes(await collect(ws, 3))
    await ws.close()
    for i in range(4):
        await any_api.say(cid, f"b{i}", token_count=1)
    last = seen[-1]["version"]
    ws = await any_api.ws(f"/v1/contexts/{cid}/stream?cursor={last}")
    await any_api.say(cid, "c0", token_count=1)
    seen += changes(await collect(ws, 8))
    assert [e["version"] for e in seen] == list(range(1, 9))
    texts = [e["message"]["parts"][0]["text"] for e in seen]
    assert texts == ["a0", "a1", "a2", "b0", "b1", "b2", "b3", "c0"]
    await ws.close()


async def test_cursor_ahead_gets_reset(api: Api, cid: str) -> None:
    await api.create(cid)
    await api.say(cid, "x")
    ws = await api.ws(f"/v1/contexts/{cid}/stream?cursor=100")
    assert await next_event(ws) == {"type": "reset", "version": 1}
    assert (await next_event(ws))["type"] == "context"
    await api.say(cid, "y")
    assert (await next_event(ws))["version"] == 2
    await ws.close()


async def test_version_jump_the_store_cannot_fill_is_a_gap(api: Api, cid: str) -> None:
    await api.create(cid)
    await api.say(cid, "x")
    ws = await api.ws(f"/v1/contexts/{cid}/stream")
    await collect(ws, 1)
    api.engine.bus.publish([Event(cid, "reset", 5)])
    assert await next_event(ws) == {"type": "gap", "version": 4, "expected": 2, "actual": 5}
    assert await next_event(ws) == {"type": "reset", "version": 5}
    await ws.close()


async def test_overflowed_subscription_is_refilled_from_the_store(
    api: Api, cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = api.engine.bus
    original = bus.subscribe

    def tiny(context_id: str | None = None, maxsize: int = 10_000) -> Subscription:
        return EventBus.subscribe(bus, context_id, maxsize=2)

    monkeypatch.setattr(bus, "subscribe", tiny)
    await api.create(cid, token_budget=1_000_000)
    ws = await api.ws(f"/v1/contexts/{cid}/stream")
    await next_event(ws)
    batch = {"messages": [text_message(f"m{i}", token_count=1) for i in range(10)]}
    assert (await api.post(f"/v1/contexts/{cid}/messages", json=batch)).status == 201
    events = await collect(ws, 10)
    assert [e["version"] for e in changes(events)] == list(range(1, 11))
    assert all(e["type"] == "message" for e in changes(events))
    monkeypatch.setattr(bus, "subscribe", original)
    await ws.close()


async def test_stream_http_errors(serve: Serve, cid: str) -> None:
    api = await serve(max_streams=1)
    with pytest.raises(aiohttp.WSServerHandshakeError) as missing:
        await api.ws(f"/v1/contexts/{cid}/stream")
    assert missing.value.status == 404
    await api.create(cid)
    for query in ("cursor=-1", "cursor=x", "include_messages=maybe"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as bad:
            await api.ws(f"/v1/contexts/{cid}/stream?{query}")
        assert bad.value.status == 400
    first = await api.ws(f"/v1/contexts/{cid}/stream")
    await next_event(first)
    with pytest.raises(aiohttp.WSServerHandshakeError) as full:
        await api.ws(f"/v1/contexts/{cid}/stream")
    assert full.value.status == 503
    full_reply = await api.get(
        f"/v1/contexts/{cid}/stream",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert full_reply.status == 503 and full_reply.json()["error"] == "too_many_streams"
    await first.close()
    await asyncio.sleep(0.05)
    second = await api.ws(f"/v1/contexts/{cid}/stream")
    assert (await next_event(second))["type"] == "context"
    await second.close()


async def test_shutdown_closes_streams_with_going_away(api: Api, cid: str) -> None:
    await api.create(cid)
    ws = await api.ws(f"/v1/contexts/{cid}/stream")
    await next_event(ws)
    assert api.runner is not None
    cleanup = asyncio.create_task(api.runner.cleanup())
    msg = await next_event(ws)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1001
    await cleanup


@pytest.mark.postgres
async def test_streams_see_appends_made_by_another_process(pg_url: str, serve: Serve) -> None:
    first = await serve(store=pg_url)
    second = await serve(store=pg_url)
    await first.create("shared", token_budget=1_000_000)
    ws = await second.ws("/v1/contexts/shared/stream")
    assert (await next_event(ws))["type"] == "context"
    for i in range(3):
        await first.say("shared", f"from A {i}", token_count=1)
    events = await collect(ws, 3)
    assert [e["version"] for e in changes(events)] == [1, 2, 3]
    # (a late hint of the create may add a ``context`` event first: hints are
    # sent just after their commits)
    assert changes(events)[0]["message"]["parts"][0]["text"] == "from A 0"
    await second.say("shared", "from B", token_count=1)
    await first.post("/v1/contexts/shared/compact", json={"replacement": []})
    await first.delete("/v1/contexts/shared")
    rest = []
    while True:
        event = await next_event(ws)
        if not isinstance(event, dict):
            break
        rest.append(event)
    assert [(e["type"], e["version"]) for e in changes(rest)] == [
        ("message", 4),
        ("compaction", 5),
        ("tombstoned", 6),
    ]
    assert ws.close_code == 1000


@pytest.mark.postgres
async def test_a_change_whose_hint_never_came_is_caught_up_at_the_next_ping(
    pg_url: str, serve: Serve
) -> None:
    """Another process wrote and died before its hint went out (or never
    learnt its write had committed): the stream finds the change at its next
    ping, not only with the context's next change."""
    api = await serve(store=pg_url, ws_ping_interval=0.1)
    await api.create("quiet", token_budget=1_000_000)
    ws = await api.ws("/v1/contexts/quiet/stream")
    assert (await next_event(ws))["type"] == "context"
    other = PostgresStore(pg_url)  # a process whose hints never leave
    await other.open()
    try:
        other._notifier.add = lambda context_id, version: None  # type: ignore[method-assign]
        await Engine(other).append("quiet", {"role": "user", "parts": []})
        event = await asyncio.wait_for(next_event(ws), timeout=5)
        assert isinstance(event, dict) and (event["type"], event["version"]) == ("message", 1)
    finally:
        await other.close()


async def test_a_context_event_comes_only_when_its_figures_change(api: Api, cid: str) -> None:
    """A settings change that leaves ``needs_compaction`` and ``used_tokens`` as
    they were sends no ``context`` event (it would repeat the last one, version
    and all); one that flips ``needs_compaction`` does."""
    await api.create(cid, token_budget=1000, policy={"strategy": "manual"})
    await api.say(cid, "hello", token_count=100)
    ws = await api.ws(f"/v1/contexts/{cid}/stream?cursor=1")
    first = await next_event(ws)
    assert (first["type"], first["version"], first["needs_compaction"]) == ("context", 1, False)
    for metadata in ({"a": 1}, {"a": 2}):
        reply = await api.put(f"/v1/contexts/{cid}", json={"metadata": metadata})
        assert reply.status == 200
    reply = await api.patch(f"/v1/contexts/{cid}/metadata", json={"metadata": {"b": 1}})
    assert reply.status == 200
    assert (await api.put(f"/v1/contexts/{cid}", json={"token_budget": 100})).status == 200
    event = await next_event(ws)  # the first event after the connect's is the budget's
    assert (event["type"], event["version"], event["needs_compaction"]) == ("context", 1, True)
