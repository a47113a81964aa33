"""Serving the app: aiohttp's runner, with aiohttp's own errors in our shape.

aiohttp answers some requests before any route or middleware sees them: a
request it cannot parse (a broken request line or header, a header too large:
400 or 431), and, should one slip through, an error inside its request
handling (500). It answers those in plain text. :class:`Runner` is
``web.AppRunner`` whose connections answer them with the JSON error shape of
every other error (``{"error": code, "message": text}``), and :func:`run` is
``web.run_app`` (signals, graceful shutdown, the "Running on" line) on that
runner.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from contextlib import suppress
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..errors import ValidationError
from .errors import error_response

__all__ = ["Runner", "listen_error", "run"]

log = logging.getLogger("fastpaca.http")

_CODES = {400: "invalid_request", 413: "payload_too_large", 431: "invalid_request"}
_KEEPALIVE = 75.0  # s an idle keep-alive connection stays open, as web.run_app has it


class _Handler(RequestHandler):
    """One connection's protocol: aiohttp's, but for the shape of its own errors."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            # aiohttp's own first: it logs the traceback, and refuses when a
            # response is under way
            super().handle_error(request, status, exc, message)
            code, text = "internal_error", "The server could not handle the request"
        else:
            # a client's bytes, not a fault of ours: one line, no traceback (a
            # broken client must not fill the log with errors); bytes that are
            # not HTTP at all on a fresh connection (a scanner, TLS to this
            # plain port) at debug level, as aiohttp has them
            code = _CODES.get(status, "invalid_request")
            # the first line of aiohttp's message: the rest quotes the bytes back
            lines = str(getattr(exc, "message", None) or "").strip().splitlines()
            reason = lines[0].rstrip(":")[:200] if lines else _phrase(status)
            text = f"The request could not be read as HTTP: {reason}"
            noise = self._request_count == 1 and isinstance(exc, BadHttpMethod)
            log.log(
                logging.DEBUG if noise else logging.INFO,
                "unreadable request",
                extra={"fields": {"remote": request.remote, "status": status, "reason": reason}},
            )
        response = error_response(status, code, text)
        response.force_close()
        return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "bad request"


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` whose connections answer aiohttp's own errors as JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server; only the protocol it makes differs
        return server


def run(
    app: web.Application,
    *,
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    shutdown_timeout: float,
    reuse_port: bool | None,
    print: Callable[[str], None],  # noqa: A002 - as web.run_app names it
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, as ``web.run_app`` does."""
    main = loop.create_task(_serve(app, host, port, shutdown_timeout, reuse_port, print))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    reuse_port: bool | None,
    print: Callable[[str], None],  # noqa: A002
) -> None:
    runner = Runner(
        app,
        handle_signals=True,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=_KEEPALIVE,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port)
        try:
            await site.start()
        except OSError as exc:  # a port in use, a host that does not resolve...
            raise listen_error(host, port, exc) from exc
        names = ", ".join(sorted(str(s.name) for s in runner.sites))
        print(f"======== Running on {names} ========\n(Press CTRL+C to quit)")
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()


def listen_error(host: str, port: int, exc: OSError) -> ValidationError:
    """Why the server cannot listen on ``host:port``, as ``serve`` reports it
    (``cannot start``, one log line, exit code 1)."""
    field = "host" if isinstance(exc, socket.gaierror) else "port"
    reason = exc.strerror or str(exc)
    return ValidationError(field, f"cannot listen on {host or '*'}:{port}: {reason}")


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            context: dict[str, Any] = {
                "message": "unhandled exception during shutdown",
                "exception": task.exception(),
                "task": task,
            }
            loop.call_exception_handler(context)
