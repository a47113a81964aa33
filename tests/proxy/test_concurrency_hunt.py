"""Two proxied calls on one context at once: double clicks, two tabs, an
agent's parallel calls, a retry racing the call it repeats (in one process,
and on another worker over PostgreSQL). The log afterwards holds each turn
once, in order, with every tool call beside its result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from loopback import serve_app

from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy
from fastpaca_proxy.retries import RETRIES

MODEL = "gpt-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Gated:
    """An OpenAI Chat upstream whose every call waits for the test to let it
    answer: ``release(n, reply)`` answers the n-th call (0-based) with
    ``reply`` (a text, or a dict of an assistant message)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    gates: list[asyncio.Future[Any]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        upstream = web.Application()
        upstream.router.add_post("/v1/chat/completions", self._answer)
        return upstream

    async def wait_calls(self, count: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: len(self.requests) >= count)

    def release(self, index: int, reply: str | dict[str, Any]) -> None:
        self.gates[index].set_result(reply)

    def release_all(self) -> None:
        """Let every call still waiting answer (a test that failed midway ends)."""
        for gate in self.gates:
            if not gate.done():
                gate.set_result("late")

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        gate: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        async with self.arrived:
            self.requests.append(body)
            self.gates.append(gate)
            self.arrived.notify_all()
        reply = await gate
        message = {"role": "assistant", "content": reply} if isinstance(reply, str) else reply
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": MODEL,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": MODEL,
        }
        delta = {k: v for k, v in message.items()}
        for calls in [delta.get("tool_calls")] if delta.get("tool_calls") else []:
            delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(calls)]
        events = [
            {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
            {**chunk, "choices": [], "usage": usage},
        ]
        for event in events:
            await out.write(f"data: {json.dumps(event)}\n\n".encode())
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        return out


@dataclass
class Proxy:
    base: str
    app: web.Application
    http: aiohttp.ClientSession

    def url(self, cid: str) -> str:
        return f"{self.base}/v1/contexts/{cid}/openai/chat/completions"

    async def chat(
        self, cid: str, messages: list[dict[str, Any]], stream: bool = False, **headers: str
    ) -> tuple[int, dict[str, str], Any]:
        body = {"model": MODEL, "messages": messages, "stream": stream}
        async with self.http.post(self.url(cid), json=body, headers=headers) as resp:
            text = await resp.text()
            return resp.status, dict(resp.headers), text if stream else json.loads(text)

    async def log(self, cid: str) -> list[tuple[str, str]]:
        async with self.http.get(f"{self.base}/v1/contexts/{cid}/messages?limit=1000") as resp:
            return [_brief(m) for m in (await resp.json())["messages"]]

    async def window(self, cid: str) -> list[tuple[str, str]]:
        async with self.http.get(f"{self.base}/v1/contexts/{cid}/context") as resp:
            return [_brief(m) for m in (await resp.json())["messages"]]


def _brief(message: dict[str, Any]) -> tuple[str, str]:
    """(role, its text, or its tool calls and results as ``call:ID`` / ``result:ID``)."""
    bits = []
    for part in message["parts"]:
        if part["type"] == "text":
            bits.append(part["text"])
        elif part["type"] == "tool-result":
            bits.append(f"result:{part['toolCallId']}")
        elif part["type"].startswith("tool-"):
            bits.append(f"call:{part['toolCallId']}")
    return message["role"], " ".join(bits)


@contextlib.asynccontextmanager
async def gated_proxy(store: str) -> AsyncIterator[tuple[Proxy, Gated]]:
    gated = Gated()
    up_runner, up_port = await serve_app(gated.app())
    config = Settings(
        store=store,
        openai_base_url=f"http://127.0.0.1:{up_port}/v1",
        anthropic_base_url=f"http://127.0.0.1:{up_port}",
    )
    app = install_proxy(create_app(config))
    try:
        runner, port = await serve_app(app)
        try:
            async with aiohttp.ClientSession() as http:
                try:
                    yield Proxy(f"http://127.0.0.1:{port}", app, http), gated
                finally:
                    gated.release_all()
                    await asyncio.sleep(0.1)  # and a call that was just let go arrive
                    gated.release_all()
        finally:
            await runner.cleanup()
    finally:
        await up_runner.cleanup()


Q1 = {"role": "user", "content": "q1"}
A1 = {"role": "assistant", "content": "a1"}
Q2 = {"role": "user", "content": "q2"}


async def _first_turn(proxy: Proxy, gated: Gated, cid: str) -> None:
    call = asyncio.ensure_future(proxy.chat(cid, [Q1]))
    await gated.wait_calls(1)
    gated.release(0, "a1")
    status, _, _ = await call
    assert status == 200


@pytest.mark.parametrize("streams", [(False, False), (True, True), (False, True)], ids=str)
async def test_a_double_clicked_resent_history_is_one_turn_in_the_window(
    tmp_path: Path, streams: tuple[bool, bool]
) -> None:
    """A client resending its history sends the same request twice at once:
    the window holds the turn once, as when the second came after the first
    (a regenerated answer), not the question twice."""
    async with gated_proxy(f"sqlite:///{tmp_path / 'd.db'}") as (proxy, gated):
        await _first_turn(proxy, gated, "dbl")
        first = asyncio.ensure_future(proxy.chat("dbl", [Q1, A1, Q2], streams[0]))
        second = asyncio.ensure_future(proxy.chat("dbl", [Q1, A1, Q2], streams[1]))
        await gated.wait_calls(3)
        gated.release(1, "a2")
        assert (await first)[0] == 200
        gated.release(2, "a2 again")
        assert (await second)[0] == 200
        assert await proxy.window("dbl") == [
            ("user", "q1"),
            ("assistant", "a1"),
            ("user", "q2"),
            ("assistant", "a2 again"),
        ]


CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_x", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    ],
}
RESULT = {"role": "tool", "tool_call_id": "call_x", "content": "12C"}


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_results_sent_twice_at_once_leave_one_result_in_the_window(
    tmp_path: Path, stream: bool
) -> None:
    """A client sending only its newest message sends its tool results twice
    at once (a double click, a retry on another worker): the second replaces
    the first answer, as when it comes after it, rather than giving the call a
    second result after that answer, which no provider takes."""
    async with gated_proxy(f"sqlite:///{tmp_path / 't.db'}") as (proxy, gated):
        call = asyncio.ensure_future(proxy.chat("tools", [Q1]))
        await gated.wait_calls(1)
        gated.release(0, CALL)
        assert (await call)[0] == 200
        first = asyncio.ensure_future(proxy.chat("tools", [RESULT], stream))
        second = asyncio.ensure_future(proxy.chat("tools", [RESULT], stream))
        await gated.wait_calls(3)
        gated.release(1, "warm")
        assert (await first)[0] == 200
        gated.release(2, "warm again")
        assert (await second)[0] == 200
        nxt = asyncio.ensure_future(proxy.chat("tools", [Q2]))
        await gated.wait_calls(4)
        gated.release(3, "a2")
        assert (await nxt)[0] == 200
        # the model gets the call's result once (a second one after "warm": a 400)
        roles = [m["role"] for m in gated.requests[3]["messages"]]
        assert roles == ["user", "assistant", "tool", "assistant", "user"]
        assert await proxy.window("tools") == [
            ("user", "q1"),
            ("assistant", "call:call_x"),
            ("tool", "result:call_x"),
            ("assistant", "warm again"),
            ("user", "q2"),
            ("assistant", "a2"),
        ]


async def test_a_retry_waiting_on_its_call_is_not_let_go_by_another_call(tmp_path: Path) -> None:
    """An SDK's retry waits on the call it repeats; another call on the same
    context meanwhile (another tab) must not send the retry upstream while the
    first call still runs: it gets the first call's answer, stored once."""
    async with gated_proxy(f"sqlite:///{tmp_path / 'r.db'}") as (proxy, gated):
        retries = proxy.app[RETRIES]
        first = asyncio.ensure_future(proxy.chat("wait", [Q1]))
        await gated.wait_calls(1)
        retry = asyncio.ensure_future(proxy.chat("wait", [Q1], **{"X-Stainless-Retry-Count": "1"}))
        while not any(call.waiting for call in retries._calls.values()):
            await asyncio.sleep(0.01)
        other = asyncio.ensure_future(proxy.chat("wait", [Q2]))
        await gated.wait_calls(2)
        gated.release(1, "a2")
        assert (await other)[0] == 200
        gated.release(0, "a1")
        status, headers, reply = await first
        assert status == 200
        upstream_again = asyncio.ensure_future(gated.wait_calls(3))
        await asyncio.wait([retry, upstream_again], return_when=asyncio.FIRST_COMPLETED)
        upstream_again.cancel()
        assert retry.done(), "the retry went upstream again"
        status, headers, again = await retry
        assert again == reply and headers["Idempotent-Replayed"] == "true"
        assert len(gated.requests) == 2
        assert sorted(await proxy.log("wait")) == sorted(
            [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]
        )


async def _serve(store: str, upstream: str, workdir: Path, name: str) -> tuple[Any, str]:
    """``fastpaca serve`` (one process) on a free port in front of ``upstream``."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPACA_")}
    log = (workdir / f"{name}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fastpaca_core.cli",
        "serve",
        "--store",
        store,
        "--port",
        str(port),
        "--openai-base-url",
        f"{upstream}/v1",
        "--anthropic-base-url",
        upstream,
        "--log-level",
        "WARNING",
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(base + "/health/ready") as resp:
                    if resp.status == 200:
                        return proc, base
            assert proc.returncode is None, (workdir / f"{name}.log").read_text()
            await asyncio.sleep(0.05)
    raise AssertionError("fastpaca serve did not become ready")


@pytest.mark.postgres
async def test_a_retry_on_another_worker_racing_its_call_stores_the_turn_once(
    pg_url: str, tmp_path: Path
) -> None:
    """The first call runs on one process, the SDK's retry (same body) on
    another over the same PostgreSQL: both reach the upstream, but the window
    holds the turn once (the retry regenerates the answer)."""
    gated = Gated()
    up_runner, up_port = await serve_app(gated.app())
    upstream = f"http://127.0.0.1:{up_port}"
    procs = []
    try:
        for name in ("one", "two"):
            procs.append(await _serve(pg_url, upstream, tmp_path, name))
        async with aiohttp.ClientSession() as http:
            one = Proxy(procs[0][1], web.Application(), http)
            two = Proxy(procs[1][1], web.Application(), http)
            try:
                await _first_turn(one, gated, "workers")
                first = asyncio.ensure_future(one.chat("workers", [Q1, A1, Q2]))
                await gated.wait_calls(2)
                retry = asyncio.ensure_future(
                    two.chat("workers", [Q1, A1, Q2], **{"X-Stainless-Retry-Count": "1"})
                )
                await gated.wait_calls(3)
                gated.release(1, "a2")
                assert (await first)[0] == 200
                gated.release(2, "a2 again")
                status, headers, _ = await retry
                assert status == 200
            finally:
                gated.release_all()
            assert await one.window("workers") == [
                ("user", "q1"),
                ("assistant", "a1"),
                ("user", "q2"),
                ("assistant", "a2 again"),
            ]
            async with http.get(f"{procs[0][1]}/v1/contexts/workers") as resp:
                assert int(headers["X-Fastpaca-Version"]) == (await resp.json())["version"]
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        await up_runner.cleanup()
