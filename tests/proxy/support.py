"""A whole stack on loopback: the fake upstream and Fastpaca with its proxy.

Both run on event loops in background threads, so sync and async SDK clients
alike talk to them over real sockets. Assertions read the canonical API.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import anthropic
import httpx
import openai
from aiohttp import web
from loopback import serve_app

from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy
from fastpaca_proxy.fake_upstream import FakeUpstream

OPENAI_MODEL = "gpt-test"
ANTHROPIC_MODEL = "claude-test"


@contextlib.contextmanager
def serve_in_thread(make_app: Callable[[], web.Application]) -> Iterator[str]:
    """Serve the app on 127.0.0.1 (any port) from a background loop; yields its URL."""
    loop = asyncio.new_event_loop()
    started: list[Any] = []
    ready = threading.Event()

    async def start() -> None:
        runner = web.AppRunner(make_app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        started.extend([runner, server.sockets[0].getsockname()[1]])

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # handed to the caller below
            started.append(exc)
        ready.set()
        if len(started) == 2:
            loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name="fastpaca-under-test", daemon=True)
    thread.start()
    ready.wait(30)
    if len(started) != 2:
        thread.join(5)
        raise RuntimeError(f"server did not start: {started}")
    runner, port = started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


@dataclass
class Stack:
    base: str
    fake: FakeUpstream
    api: httpx.Client
    clients: list[_Closable] = field(default_factory=list)

    def track(self, client: C) -> C:
        """Close ``client`` (an SDK client) when the stack stops."""
        self.clients.append(client)
        return client

    def openai_url(self, context_id: str) -> str:
        return f"{self.base}/v1/contexts/{context_id}/openai"

    def anthropic_url(self, context_id: str) -> str:
        return f"{self.base}/v1/contexts/{context_id}/anthropic"

    def log(self, context_id: str) -> list[dict[str, Any]]:
        reply = self.api.get(f"/v1/contexts/{context_id}/messages", params={"limit": 1000})
        reply.raise_for_status()
        messages: list[dict[str, Any]] = reply.json()["messages"]
        return messages

    def window(self, context_id: str, **params: Any) -> dict[str, Any]:
        reply = self.api.get(f"/v1/contexts/{context_id}/context", params=params)
        reply.raise_for_status()
        window: dict[str, Any] = reply.json()
        return window

    def texts(self, context_id: str) -> list[tuple[str, str]]:
        """(role, joined text) of every logged message."""
        return [
            (m["role"], "".join(p.get("text", "") for p in m["parts"] if p["type"] == "text"))
            for m in self.log(context_id)
        ]


@contextlib.contextmanager
def run_stack(store: str, **settings: Any) -> Iterator[Stack]:
    with FakeUpstream().in_thread() as fake:
        config = Settings(
            store=store,
            openai_base_url=fake.openai_base_url,
            anthropic_base_url=fake.base_url,
            **settings,
        )
        with serve_in_thread(lambda: install_proxy(create_app(config))) as base:
            headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as api:
                stack = Stack(base, fake, api)
                try:
                    yield stack
                finally:
                    for client in stack.clients:
                        client.close()


def chat_upstream(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.Application:
    """An upstream answering OpenAI Chat Completions with ``handler``."""
    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", handler)
    return upstream


@contextlib.asynccontextmanager
async def proxy_before(
    upstream: web.Application, store: str, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Fastpaca with its proxy in front of ``upstream`` (a test's own aiohttp
    app, standing for both providers), both on loopback in this event loop;
    yields Fastpaca's base URL. ``host`` is the name the proxy uses for the
    upstream."""
    up_runner, up_port = await serve_app(upstream)
    config = Settings(
        store=store,
        openai_base_url=f"http://{host}:{up_port}/v1",
        anthropic_base_url=f"http://{host}:{up_port}",
    )
    try:
        runner, port = await serve_app(install_proxy(create_app(config)))
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()
    finally:
        await up_runner.cleanup()


def openai_client(stack: Stack, context_id: str) -> openai.OpenAI:
    """The OpenAI SDK pointed at ``context_id``'s base URL (closed with the stack)."""
    return stack.track(
        openai.OpenAI(base_url=stack.openai_url(context_id), api_key="sk-client", max_retries=0)
    )


def anthropic_client(stack: Stack, context_id: str) -> anthropic.Anthropic:
    """The Anthropic SDK pointed at ``context_id``'s base URL (closed with the stack)."""
    return stack.track(
        anthropic.Anthropic(
            base_url=stack.anthropic_url(context_id), api_key="sk-ant-client", max_retries=0
        )
    )
