"""PostgreSQL goes down under a running service, then comes back.

Two app instances (A with the proxy, B) serve over loopback sockets on one
private PostgreSQL cluster while clients append with idempotency keys. The
cluster is stopped (``fast``: a clean shutdown, ``immediate``: a crash).
While it is down every kind of request answers ``503 store_unavailable`` in
the JSON error shape within 5 seconds (never a 500, never a hang) and
``/health/ready`` turns 503 while ``/health/live`` stays 200. Then the cluster
starts again: without restarting anything the service answers again, A's
LISTEN connection is back (a websocket on A, opened before the outage, gets
the messages B appends), and every acknowledged append is stored exactly once.
A frozen server (SIGSTOP: connections accepted, nothing answered) is caught
by the timeouts instead of socket errors, within the same bound.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from loopback import serve_app
from private_pg import PrivatePostgres
from server_proc import RetryingAppender, acked, figures, read_log

from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy
from fastpaca_proxy.fake_upstream import FakeUpstream

BOUND = 5.0  # the bound for a 503 while the store is down
CONTEXT = "outage"


@dataclass
class Instance:
    base: str
    runner: web.AppRunner


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


async def start_instance(store: str, fake: FakeUpstream, runners: list[web.AppRunner]) -> Instance:
    settings = Settings(
        store=store,
        store_timeout=2.0,
        openai_base_url=fake.openai_base_url,
        anthropic_base_url=fake.base_url,
    )
    runner, port = await serve_app(install_proxy(create_app(settings)))
    runners.append(runner)
    return Instance(f"http://127.0.0.1:{port}", runner)


def say(text: str) -> dict[str, Any]:
    return {"message": {"role": "user", "parts": [{"type": "text", "text": text}]}}


async def timed(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any, float]:
    started = time.monotonic()
    async with session.request(method, url, **kw) as resp:
        body = await resp.json(content_type=None)
        return resp.status, body, time.monotonic() - started


async def next_message(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:
    """The next ``message`` event on ``ws`` (other events skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.01, deadline - loop.time()))
        assert msg.type == aiohttp.WSMsgType.TEXT, f"stream ended: {msg}"
        event: dict[str, Any] = msg.json()
        if event["type"] == "message":
            return event


async def check_down(session: aiohttp.ClientSession, a: Instance, fake: FakeUpstream) -> float:
    """Every kind of request answers 503 store_unavailable, quickly; the slowest (s)."""
    worst = 0.0
    ctx = f"{a.base}/v1/contexts/{CONTEXT}"
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"{ctx}/messages", {"json": say("down"), "headers": {"Idempotency-Key": "d1"}}),
        ("GET", f"{ctx}/messages", {}),
        ("GET", f"{ctx}/context", {}),
        ("GET", f"{ctx}", {}),
        ("GET", f"{a.base}/v1/contexts", {}),
        ("PUT", f"{a.base}/v1/contexts/another", {"json": {}}),
        ("GET", f"{ctx}/stream", {}),  # the websocket route, before the upgrade
        ("GET", f"{a.base}/health/ready", {}),
    ]
    for method, url, kw in calls:
        status, body, took = await timed(session, method, url, **kw)
        assert status == 503, (method, url, status, body)
        assert body["error"] == "store_unavailable" and isinstance(body["message"], str), body
        assert set(body) == {"error", "message"}, body
        assert took < BOUND, (method, url, took)
        worst = max(worst, took)
    status, body, _ = await timed(session, "GET", f"{a.base}/health/live")
    assert status == 200 and body == {"status": "ok"}
    # a real websocket handshake is refused with 503 too
    started = time.monotonic()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(f"{ctx}/stream")
    assert refused.value.status == 503
    assert time.monotonic() - started < BOUND
    # the proxy answers 503 in the provider's own error shape, and calls no model
    seen = len(fake.requests)
    status, body, took = await timed(
        session,
        "POST",
        f"{ctx}/openai/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 503, body
    assert isinstance(body["error"], dict) and "PostgreSQL" in body["error"]["message"], body
    assert took < BOUND
    assert len(fake.requests) == seen
    return max(worst, took)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_store_outage_answers_503_and_recovers(
    private_pg: PrivatePostgres, fake: FakeUpstream, mode: str
) -> None:
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        a = await start_instance(private_pg.url, fake, runners)
        b = await start_instance(private_pg.url, fake, runners)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.put(f"{a.base}/v1/contexts/{CONTEXT}", json={}) as resp:
                assert resp.status == 200, await resp.text()
            # a stream on A, opened before the outage, hears B's appends (LISTEN/NOTIFY)
            ws = await session.ws_connect(f"{a.base}/v1/contexts/{CONTEXT}/stream")
            async with session.post(
                f"{b.base}/v1/contexts/{CONTEXT}/messages", json=say("from b, before")
            ) as resp:
                assert resp.status == 201
                before = await resp.json()
            assert (await next_message(ws, 10))["seq"] == before["seq"]

            appenders = [
                RetryingAppender(
                    f"c{i}",
                    CONTEXT,
                    [a.base, b.base],
                    session,
                    stop,
                    random.Random(i),
                )
                for i in range(4)
            ]
            tasks = [asyncio.create_task(x.run()) for x in appenders]
            while acked(appenders) < 40:
                await asyncio.sleep(0.01)

            down_at = time.monotonic()
            await asyncio.to_thread(private_pg.stop, mode)
            print(f"\nPostgreSQL stopped ({mode}) after {acked(appenders)} acknowledged appends")
            worst = max(await check_down(session, a, fake), await check_down(session, b, fake))
            during = acked(appenders)

            await asyncio.to_thread(private_pg.start)
            up_at = time.monotonic()
            loop = asyncio.get_running_loop()
            while True:  # the service answers again by itself
                status, _, _ = await timed(session, "GET", f"{a.base}/health/ready")
                if status == 200:
                    break
                assert loop.time() - up_at < 15, "not ready 15 s after PostgreSQL came back"
                await asyncio.sleep(0.05)
            ready_after = time.monotonic() - up_at
            while acked(appenders) <= during + 20:
                assert time.monotonic() - up_at < 30, "appends did not resume"
                await asyncio.sleep(0.01)

            # the stream opened before the outage either lived through it or was
            # closed with 1011 store_unavailable (a client resumes with its cursor)
            drain_until = time.monotonic() + 2
            while time.monotonic() < drain_until:
                try:
                    msg = await ws.receive(timeout=0.2)
                except TimeoutError:
                    break  # alive and quiet
                if msg.type != aiohttp.WSMsgType.TEXT:
                    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
                    assert (msg.data, msg.extra) == (1011, "store_unavailable"), msg
                    break
            await ws.close()
            # A's LISTEN is back: a stream on A hears what B appends
            async with session.get(f"{a.base}/v1/contexts/{CONTEXT}") as resp:
                version = (await resp.json())["version"]
            live = await session.ws_connect(
                f"{a.base}/v1/contexts/{CONTEXT}/stream?cursor={version}"
            )
            heard: dict[str, Any] | None = None
            for n in range(40):
                async with session.post(
                    f"{b.base}/v1/contexts/{CONTEXT}/messages", json=say(f"from b, after {n}")
                ) as resp:
                    assert resp.status == 201, await resp.text()
                try:
                    while heard is None:
                        event = await next_message(live, 0.5)
                        if "from b, after" in event["message"]["parts"][0]["text"]:
                            heard = event
                except TimeoutError:
                    continue
                break
            assert heard is not None, "a stream on A never heard B's appends again"
            listen_after = time.monotonic() - up_at
            await live.close()
            # a stream replaying from the start works as well
            fresh = await session.ws_connect(f"{a.base}/v1/contexts/{CONTEXT}/stream?cursor=0")
            assert (await next_message(fresh, 10))["seq"] == 1
            await fresh.close()

            stop.set()
            await asyncio.gather(*tasks)
            rows = await read_log(session, a.base, CONTEXT)
            b_rows = [r for r in rows if "marker" not in r["metadata"]]
            rows = [r for r in rows if "marker" in r["metadata"]]
            # B's own appends (not from the appenders) are the only other rows
            assert all("from b" in r["parts"][0]["text"] for r in b_rows)
            markers = [r["metadata"]["marker"] for r in rows]
            assert len(markers) == len(set(markers)), "an append was stored twice"
            acked_markers = {ack.marker for x in appenders for ack in x.acks}
            assert acked_markers == set(markers), "acknowledged and stored differ"
            seqs = [r["seq"] for r in await read_log(session, a.base, CONTEXT)]
            assert seqs == list(range(1, len(seqs) + 1))
            at = {r["metadata"]["marker"]: r["seq"] for r in rows}
            assert all(at[ack.marker] == ack.seq for x in appenders for ack in x.acks)
            stats = figures(appenders)
            unexpected = set(stats["outcomes"]) - {"201", "503"}
            assert not unexpected, stats
            assert not [e for x in appenders for e in x.server_errors if not e.startswith("503")]
            print(
                f"down {up_at - down_at:.1f} s, slowest 503 {worst:.2f} s; "
                f"ready {ready_after:.2f} s after restart; "
                f"LISTEN heard {listen_after:.2f} s after restart; {stats}"
            )
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for runner in runners:
            await runner.cleanup()


def cluster_pids(pg: PrivatePostgres) -> list[int]:
    """The postmaster of ``pg`` and its children."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            pids.append(int(stat.parent.name))
    return pids


async def test_hung_store_answers_503_in_time(
    private_pg: PrivatePostgres, fake: FakeUpstream
) -> None:
    """A server that accepts connections but never answers (SIGSTOP): the timeouts,
    not socket errors, produce the 503s, still within the bound."""
    runners: list[web.AppRunner] = []
    stopped: list[int] = []
    try:
        a = await start_instance(private_pg.url, fake, runners)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            ctx = f"{a.base}/v1/contexts/{CONTEXT}"
            async with session.put(ctx, json={}) as resp:
                assert resp.status == 200
            stopped = cluster_pids(private_pg)
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            calls: list[tuple[str, str, dict[str, Any]]] = [
                (
                    "POST",
                    f"{ctx}/messages",
                    {"json": say("hung"), "headers": {"Idempotency-Key": "h"}},
                ),
                ("GET", f"{ctx}/messages", {}),
                ("GET", f"{a.base}/health/ready", {}),
            ]
            results = await asyncio.gather(*(timed(session, m, u, **kw) for m, u, kw in calls))
            for (method, url, _), (status, body, took) in zip(calls, results, strict=True):
                assert status == 503, (method, url, status, body)
                assert body["error"] == "store_unavailable", body
                assert took < BOUND, (method, url, took)
            print(f"\nhung store: 503s after {[round(r[2], 2) for r in results]} s")
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            stopped = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while True:
                status, body, _ = await timed(
                    session,
                    "POST",
                    f"{ctx}/messages",
                    json=say("hung"),
                    headers={"Idempotency-Key": "h"},
                )
                if status == 201:
                    break
                assert status == 503, body
                assert loop.time() < deadline, "no recovery after SIGCONT"
                await asyncio.sleep(0.1)
            async with session.get(f"{ctx}/messages") as resp:
                texts = [m["parts"][0]["text"] for m in (await resp.json())["messages"]]
            assert texts == ["hung"]  # the write whose outcome was unknown, stored once
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        for runner in runners:
            await runner.cleanup()


async def test_changes_missed_while_listen_was_away_reach_streams(
    private_pg: PrivatePostgres, fake: FakeUpstream
) -> None:
    """A's LISTEN connection is cut, and B appends before A can listen again.

    New connections are refused meanwhile (``ALLOW_CONNECTIONS false``), so
    A's listener cannot come back while B appends over its open pool
    connections: the notification is lost. Once connections are allowed,
    A's listener reconnects and resyncs the contexts its streams follow:
    the stream gets B's message without any further change.
    """
    import asyncpg

    runners: list[web.AppRunner] = []
    admin = await asyncpg.connect(private_pg.url.rsplit("/", 1)[0] + "/template1")
    try:
        a = await start_instance(private_pg.url, fake, runners)
        b = await start_instance(private_pg.url, fake, runners)
        async with aiohttp.ClientSession() as session:
            ctx_b = f"{b.base}/v1/contexts/{CONTEXT}"
            async with session.put(ctx_b, json={}) as resp:
                assert resp.status == 200
            # warm B's pool (appends hold connections concurrently)
            for reply in await asyncio.gather(
                *(session.post(f"{ctx_b}/messages", json=say(f"warm {i}")) for i in range(4))
            ):
                assert reply.status == 201
                reply.release()
            ws = await session.ws_connect(f"{a.base}/v1/contexts/{CONTEXT}/stream?cursor=5")
            try:
                await admin.execute("ALTER DATABASE postgres ALLOW_CONNECTIONS false")
                cut = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = 'postgres' AND query ILIKE 'LISTEN%'"
                )
                assert cut >= 1, "no LISTEN connection found to cut"
                async with session.post(f"{ctx_b}/messages", json=say("while away")) as resp:
                    assert resp.status == 201, await resp.text()
                    missed = (await resp.json())["seq"]
                with pytest.raises(asyncio.TimeoutError):
                    await next_message(ws, timeout=1.0)  # not heard: A cannot listen yet
                await admin.execute("ALTER DATABASE postgres ALLOW_CONNECTIONS true")
                event = await next_message(ws, timeout=15.0)
                assert event["seq"] == missed
                assert event["message"]["parts"][0]["text"] == "while away"
            finally:
                await admin.execute("ALTER DATABASE postgres ALLOW_CONNECTIONS true")
                await ws.close()
    finally:
        await admin.close()
        for runner in runners:
            await runner.cleanup()
