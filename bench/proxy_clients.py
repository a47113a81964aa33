"""The clients of the proxy benchmark (``bench.proxy_overhead``): a chat
conversation, and the sides its calls go to (direct, passed through, proxied)."""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

__all__ = ["Conversation", "Servers", "Side", "StreamSample"]

SYSTEM = "You are a terse assistant. Answer in one short paragraph."

_WORDS = (
    "the proxy stores every turn of the conversation and sends the model a compacted "
    "context cut to its budget so a client can resend its whole history or only the "
    "newest message while the log keeps everything that was said"
).split()


def _text(index: int, words: int) -> str:
    start = (index * 11) % len(_WORDS)
    return " ".join(_WORDS[(start + k) % len(_WORDS)] for k in range(words))


@dataclass
class Servers:
    fake_url: str
    proxy_url: str
    store_url: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)


class Conversation:
    """One client's chat: ``turns`` turns per context, then a fresh context.

    ``resend``: every request carries the whole history; ``newest``: only the
    system prompt and the newest user message.
    """

    def __init__(self, name: str, route: str, mode: str, args: argparse.Namespace) -> None:
        self.name = name
        self.route = route
        self.mode = mode
        self.turns = args.turns
        self.words = args.words
        self.serial = 0
        self.turn = 0
        self.history: list[dict[str, Any]] = []
        self.fresh = True  # the current context id has not been used yet

    @property
    def context_id(self) -> str:
        return f"{self.name}-{self.serial}"

    def request(self, stream: bool = False) -> dict[str, Any]:
        if self.turn == self.turns:
            self.serial += 1
            self.turn = 0
            self.history = []
            self.fresh = True
        text = f"turn {self.turn} of chat {self.serial}: " + _text(
            self.serial * 31 + self.turn, self.words
        )
        user = {"role": "user", "content": text}
        self.history.append(user)
        msgs = self.history if self.mode == "resend" else [user]
        if self.route == "anthropic":
            body: dict[str, Any] = {
                "model": "claude-test",
                "max_tokens": 1024,
                "system": SYSTEM,
                "messages": list(msgs),
            }
        else:
            body = {"model": "gpt-test", "messages": [{"role": "system", "content": SYSTEM}, *msgs]}
        if stream:
            body["stream"] = True
        return body

    def answered(self, reply_text: str) -> None:
        self.history.append({"role": "assistant", "content": reply_text})
        self.turn += 1


def _conversation(
    name: str, side: str, route: str, mode: str, args: argparse.Namespace
) -> Conversation:
    """A client's conversation on ``side``: only the proxy holds a conversation
    for a client that sends its newest message; a direct (or passed through)
    call must carry all of it (see the module's docstring)."""
    return Conversation(name, route, mode if side == "proxy" else "resend", args)


def _headers(route: str) -> dict[str, str]:
    if route == "anthropic":
        return {
            "x-api-key": "bench",
            "anthropic-version": "2023-06-01",
            "Content-Type": "application/json",
        }
    return {"Authorization": "Bearer bench", "Content-Type": "application/json"}


def _reply_text(route: str, data: dict[str, Any]) -> str:
    if route == "anthropic":
        return "".join(b.get("text", "") for b in data["content"] if b.get("type") == "text")
    return str(data["choices"][0]["message"]["content"])


def _stream_text(route: str, events: Sequence[bytes]) -> str:
    parts: list[str] = []
    for raw in events:
        for line in raw.split(b"\n"):
            if not line.startswith(b"data:") or line.endswith(b"[DONE]"):
                continue
            chunk = orjson.loads(line[5:])
            if route == "anthropic":
                if chunk.get("type") == "content_block_delta":
                    parts.append(chunk["delta"].get("text", ""))
            else:
                for choice in chunk.get("choices") or []:
                    parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


class Side:
    """Where a client sends its calls.

    ``direct``: straight to the fake; ``proxy``: through the proxy with a
    context id in the path; ``passthru``: through the proxy without a context
    (nothing read or stored: the cost of the extra HTTP hop alone).
    """

    def __init__(self, name: str, servers: Servers, route: str, budget: int | None) -> None:
        self.name = name
        self.servers = servers
        self.route = route
        self.budget = budget
        self.headers = _headers(route)
        self.missing_headers = 0

    def url(self, conv: Conversation) -> str:
        anthropic = self.route == "anthropic"
        if self.name in ("direct", "passthru"):
            path = "v1/messages" if anthropic else "v1/chat/completions"
            base = self.servers.fake_url if self.name == "direct" else self.servers.proxy_url
            return f"{base}/{path}"
        path = "anthropic/v1/messages" if anthropic else "openai/chat/completions"
        return f"{self.servers.proxy_url}/v1/contexts/{conv.context_id}/{path}"

    async def setup(self, session: aiohttp.ClientSession, conv: Conversation) -> None:
        """Create a proxied conversation's context with the benchmark's budget (untimed)."""
        if self.name != "proxy" or not conv.fresh:
            return
        conv.fresh = False
        if self.budget is None:
            return
        url = f"{self.servers.proxy_url}/v1/contexts/{conv.context_id}"
        async with session.put(url, json={"token_budget": self.budget}) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"PUT {url}: {resp.status} {await resp.text()}")

    async def call(self, session: aiohttp.ClientSession, conv: Conversation) -> float:
        """One non-streaming call; returns its latency in ms."""
        payload = orjson.dumps(conv.request())
        await self.setup(session, conv)
        url = self.url(conv)
        start = time.perf_counter_ns()
        async with session.post(url, data=payload, headers=self.headers) as resp:
            data = await resp.read()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if resp.status != 200:
            raise RuntimeError(f"{self.name} {url}: {resp.status} {data[:500]!r}")
        if self.name == "proxy" and "X-Fastpaca-Version" not in resp.headers:
            self.missing_headers += 1
        conv.answered(_reply_text(self.route, orjson.loads(data)))
        return elapsed

    async def stream(self, session: aiohttp.ClientSession, conv: Conversation) -> StreamSample:
        """One streaming call: when each SSE event arrived, from the start of the request."""
        payload = orjson.dumps(conv.request(stream=True))
        await self.setup(session, conv)
        url = self.url(conv)
        times: list[int] = []
        events: list[bytes] = []
        buffer = b""
        start = time.perf_counter_ns()
        async with session.post(url, data=payload, headers=self.headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{self.name} {url}: {resp.status} {await resp.text()}")
            async for chunk in resp.content.iter_any():
                now = time.perf_counter_ns()
                buffer += chunk
                while (end := buffer.find(b"\n\n")) >= 0:
                    events.append(buffer[:end])
                    buffer = buffer[end + 2 :]
                    times.append(now)
        conv.answered(_stream_text(self.route, events))
        ms = [(t - start) / 1e6 for t in times]
        return StreamSample(first=ms[0], gaps=[b - a for a, b in zip(ms, ms[1:], strict=False)])


@dataclass
class StreamSample:
    first: float  # ms to the first event
    gaps: list[float]  # ms between consecutive events


def _session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=False),
        timeout=aiohttp.ClientTimeout(total=120),
    )
