"""The application factory: ``create_app(settings) -> web.Application``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, runtime_checkable

from aiohttp import web

from ..engine import Engine
from ..errors import FastpacaError
from ..events import Event
from ..settings import Settings
from ..stores.base import open_store
from ..summarizer import Summarizer
from ..tokens import load_encoding
from . import contexts, messages, ops, stream, summaries
from .errors import DIALECTS, Dialects
from .limits import DEADLINES, RATE_LIMITER, Deadlines, RateLimiter, lift_deadline
from .metrics import MeteredBus, Metrics, TimedStore
from .middleware import request_middleware
from .routing import add_routes, expect_everywhere
from .state import ENGINE, METRICS, SETTINGS, STREAMS, SUMMARIZER, Streams
from .tenants import TENANTS, Tenants

__all__ = ["create_app"]


@runtime_checkable
class _Listens(Protocol):
    """A store that hears about changes other processes commit (PostgreSQL)."""

    async def listen(
        self,
        callback: Callable[[str, int], None],
        on_reconnect: Callable[[], None] | None = None,
    ) -> Callable[[], Awaitable[None]]: ...


async def _resync(engine: Engine, bus: MeteredBus) -> None:
    """After the listening connection came back: what it missed meanwhile.

    Every context a stream of this process follows gets a ``remote`` hint at
    its current version, so the stream catches up from the store.
    """
    for cid in bus.followed():
        try:
            ctx = await engine.store.get_context(cid)
        except FastpacaError:
            return  # the store is away again; the next reconnect resyncs
        if ctx is not None:
            bus.relay([Event(cid, "remote", ctx.version)])


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the store (and the engine over it) for the app's lifetime.

    With a store shared by several processes, changes made elsewhere reach
    this process's bus as ``remote`` hints ``(context id, version)``; streams
    read the events themselves from the store.
    """
    settings = app[SETTINGS]
    metrics = app[METRICS]
    inner = open_store(settings.store, timeout=settings.store_timeout)
    store = TimedStore(inner, metrics)
    store.use_alone_hint(app[DEADLINES].alone)
    await store.open()
    stop_listening: Callable[[], Awaitable[None]] | None = None
    try:
        bus = MeteredBus(metrics)
        engine = Engine(store, bus=bus)
        # load the token encoding now, not on the first append
        await asyncio.to_thread(load_encoding, engine.tokens.encoding_name)
        if isinstance(inner, _Listens):
            resyncs: set[asyncio.Task[None]] = set()

            def on_reconnect() -> None:
                task = asyncio.create_task(_resync(engine, bus))
                resyncs.add(task)
                task.add_done_callback(resyncs.discard)

            stop_listening = await inner.listen(
                lambda cid, version: bus.relay([Event(cid, "remote", version)]),
                on_reconnect,
            )
        app[ENGINE] = engine
        yield
    finally:
        if stop_listening is not None:
            await stop_listening()
        await store.close()


async def _deadlines_ctx(app: web.Application) -> AsyncIterator[None]:
    """The sweep of the request deadlines (:class:`~.limits.Deadlines`)."""
    sweep = asyncio.create_task(app[DEADLINES].run(), name="fastpaca-deadlines")
    try:
        yield
    finally:
        sweep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweep


async def _summarizer_ctx(app: web.Application) -> AsyncIterator[None]:
    """The background summariser of ``summarize`` contexts, hooked to the engine.

    It calls the upstreams configured in the settings (``openai_base_url``,
    ``anthropic_base_url``) with the server-held keys; see docs/summarization.md.
    """
    summarizer = Summarizer.from_settings(app[ENGINE], app[SETTINGS])
    await summarizer.start()
    app[SUMMARIZER] = summarizer
    try:
        yield
    finally:
        await summarizer.stop()


async def _close_streams(app: web.Application) -> None:
    """On shutdown: refuse new streams, close open ones with 1001 (going away).

    All at once, each waiting for its client's answer a second at most (half
    the shutdown timeout if that is less; the requests still running get the
    timeout after this): a client that does not read never takes its close
    frame, so its connection is cut then.
    """
    streams = app[STREAMS]
    streams.closing = True
    timeout = min(stream.SHUTDOWN_CLOSE_TIMEOUT, app[SETTINGS].shutdown_timeout / 2)
    message = b"server shutting down"
    await asyncio.gather(
        *(stream.close_within(ws, timeout, code=1001, message=message) for ws in streams.open)
    )


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    app = web.Application(
        middlewares=[request_middleware],
        # the larger limit; the request middleware holds each route to its own
        client_max_size=max(settings.max_body_bytes, settings.proxy_max_body_bytes),
    )
    metrics = Metrics()
    app[SETTINGS] = settings
    app[TENANTS] = Tenants.from_settings(settings)
    app[DIALECTS] = Dialects()  # routes plugged in that speak another API (the proxy)
    if settings.rate_limit > 0:
        app[RATE_LIMITER] = RateLimiter(settings.rate_limit, settings.rate_burst)
    app[DEADLINES] = Deadlines(settings.request_timeout)
    app.on_response_prepare.append(lift_deadline)
    app[METRICS] = metrics
    app[STREAMS] = Streams(settings.max_streams, metrics)
    app.cleanup_ctx.append(_deadlines_ctx)
    app.cleanup_ctx.append(_engine_ctx)
    app.cleanup_ctx.append(_summarizer_ctx)
    app.on_shutdown.append(_close_streams)
    # the router tries the routes under /v1/contexts in the order they were
    # added (none overlaps another): the hottest, append and the context
    # read, first, so they match at the first regex instead of the fourth
    add_routes(app, messages.routes)
    add_routes(app, contexts.routes)
    add_routes(app, summaries.routes)
    add_routes(app, stream.routes)
    add_routes(app, ops.routes)
    expect_everywhere(app)
    return app
