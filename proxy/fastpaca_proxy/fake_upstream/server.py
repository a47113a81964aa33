"""The fake upstream's state (script queue, recordings) and ways to run it.

``async with FakeUpstream() as fake`` serves on 127.0.0.1 with a free port;
``with FakeUpstream().in_thread() as fake`` does the same from sync code.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from aiohttp import web

from .app import create_app
from .recording import RecordedRequest
from .script import (
    PROTOCOLS,
    Protocol,
    Reply,
    Scriptable,
    as_reply,
    default_prompt_tokens,
)

PromptTokens = Callable[[RecordedRequest], int]

# Tests should use made-up ids such as "gpt-test" / "claude-test": the
# anthropic SDK warns (DeprecationWarning) for models it knows to be retired.
DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-test",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "claude-test",
    "claude-haiku-4-5",
)


def _default_prompt_tokens(request: RecordedRequest) -> int:
    return default_prompt_tokens(request.protocol, request.body)


class FakeUpstream:
    """A scriptable, recording stand-in for the OpenAI and Anthropic APIs.

    ``api_key``: when set, requests must carry it (``Authorization: Bearer`` for
    OpenAI, ``x-api-key`` or bearer for Anthropic) or get a 401.
    ``prompt_tokens``: reported prompt tokens for a request (default
    :func:`default_prompt_tokens`); assignable at any time.
    ``default_reply``: the answer when nothing is scripted (default: echo);
    e.g. ``Reply(chunks=64, delay=0.02)`` paces every unscripted stream.
    Thread-safe: a test may script and read recordings while the server runs
    in another thread (:meth:`in_thread`).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        prompt_tokens: PromptTokens | None = None,
        echo_prefix: str = "echo: ",
        require_anthropic_version: bool = True,
        default_reply: Reply | None = None,
    ) -> None:
        self.api_key = api_key
        self.models = list(models)
        self.prompt_tokens: PromptTokens = prompt_tokens or _default_prompt_tokens
        self.echo_prefix = echo_prefix
        self.require_anthropic_version = require_anthropic_version
        self.default_reply = default_reply or Reply()
        self._requests: list[RecordedRequest] = []
        self._queue: list[tuple[Protocol | None, Reply]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    # ------------------------------------------------------------ scripting

    def script(self, *replies: Scriptable, protocol: Protocol | None = None) -> FakeUpstream:
        """Queue replies (FIFO), for one protocol or (``None``) for any."""
        if protocol is not None and protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
        items = [(protocol, as_reply(reply)) for reply in replies]
        with self._lock:
            self._queue.extend(items)
        return self

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._lock:
            return len(self._queue)

    def take(self, protocol: Protocol) -> Reply:
        """The first queued reply for ``protocol``, else :attr:`default_reply`."""
        with self._lock:
            for i, (wanted, reply) in enumerate(self._queue):
                if wanted is None or wanted == protocol:
                    del self._queue[i]
                    return reply
        return self.default_reply

    # ------------------------------------------------------------ recordings

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def last(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise LookupError("the fake upstream has received no request")
            return self._requests[-1]

    def requests_for(self, protocol: Protocol) -> list[RecordedRequest]:
        return [r for r in self.requests if r.protocol == protocol]

    def clear(self) -> None:
        """Forget recordings and scripted replies."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}fake{next(self._ids):020d}"

    # ------------------------------------------------------------ running

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake upstream is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (Anthropic SDK ``base_url``)."""
        return f"http://{self._host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (OpenAI SDK ``base_url``)."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    def app(self) -> web.Application:
        return create_app(self)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("the fake upstream is already running")
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._host = host
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeUpstream]:
        """Run the server on its own loop in a background thread (for sync clients)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start(host, port))
            except BaseException as exc:  # handed to the caller below
                failure.append(exc)
            ready.set()
            if not failure:
                loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)


@contextlib.asynccontextmanager
async def run_fake_upstream(
    host: str = "127.0.0.1", port: int = 0, **options: Any
) -> AsyncIterator[FakeUpstream]:
    """``async with run_fake_upstream() as fake:`` serve on ``host:port`` (0 = any)."""
    fake = FakeUpstream(**options)
    await fake.start(host, port)
    try:
        yield fake
    finally:
        await fake.stop()


@contextlib.contextmanager
def run_fake_upstream_in_thread(
    host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[FakeUpstream]:
    """``with run_fake_upstream_in_thread() as fake:`` for sync code."""
    with FakeUpstream(**options).in_thread(host, port) as fake:
        yield fake
