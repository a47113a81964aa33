"""Sending a request upstream and copying the answer back: the pieces every
proxied route shares (a call in ``flow``, a count in ``counting``, a route
passed through in ``passthrough``), and the proxy's own errors in the
provider's shape.
"""

from __future__ import annotations

import asyncio
import io

import aiohttp
from aiohttp import web
from yarl import URL

from fastpaca_core.http import SETTINGS

from .adapters import Adapter
from .upstream import Upstream

__all__ = [
    "Relayed",
    "finish_stream",
    "hold_headers",
    "is_sse",
    "own_error",
    "relay",
    "request_body",
    "timeout_error",
    "unreachable_error",
]

_LARGE_BODY = 1024 * 1024  # bytes; larger upstream bodies are written in chunks
_HOLD_HEADERS = 0.05  # s; a relayed stream's headers wait this long for its first event


class Relayed(web.StreamResponse):
    """A relayed stream: its headers leave with its first event, in one write
    (one wake-up of the client instead of two; aiohttp's own ``Response``
    buffers its headers the same way), or after ``_HOLD_HEADERS`` when the
    upstream is slow to send that event (see ``hold_headers``), or right
    before the connection is cut when the upstream broke off first, so the
    client sees a started response cut short, not a server that never
    answered (which SDKs retry)."""

    _send_headers_immediately = False

    def send_headers(self) -> None:
        """Send the held headers now; a no-op once they are out."""
        flush = getattr(self._payload_writer, "send_headers", None)
        if flush is not None:
            try:
                flush()
            except ConnectionError:
                pass  # the client left; the relay finds out on its next write


def hold_headers(out: Relayed) -> asyncio.TimerHandle:
    """Send a relayed stream's headers after ``_HOLD_HEADERS`` if no event took them."""
    return asyncio.get_running_loop().call_later(_HOLD_HEADERS, out.send_headers)


def request_body(data: bytes) -> bytes | io.BytesIO:
    """An upstream request body: a large one (a prompt with images) goes out in
    chunks, letting the event loop breathe between them."""
    return io.BytesIO(data) if len(data) > _LARGE_BODY else data


def own_error(adapter: Adapter, status: int, code: str, message: str) -> web.Response:
    """Our own error (``code`` as in the REST API), in the provider's shape."""
    body = adapter.error_body(status, code, message)
    return web.Response(status=status, body=body, content_type="application/json")


def timeout_error(request: web.Request, adapter: Adapter, exc: TimeoutError) -> web.Response:
    """504: no connection within ``upstream_connect_timeout``, or no answer within
    ``upstream_timeout``."""
    settings = request.app[SETTINGS]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        message = (
            f"Could not connect to the upstream within {settings.upstream_connect_timeout:g} s"
        )
    else:
        message = f"The upstream did not answer within {settings.upstream_timeout:g} s"
    return own_error(adapter, 504, "upstream_timeout", message)


def unreachable_error(adapter: Adapter, exc: aiohttp.ClientError) -> web.Response:
    message = f"The upstream could not be reached: {type(exc).__name__}"
    return own_error(adapter, 502, "upstream_unreachable", message)


def is_sse(resp: aiohttp.ClientResponse) -> bool:
    return resp.headers.get("Content-Type", "").startswith("text/event-stream")


async def finish_stream(
    request: web.Request, out: web.StreamResponse, dropped: bool, client_gone: bool
) -> None:
    """End a relayed stream; when the upstream cut it off, cut the client's too."""
    if client_gone:
        return
    if dropped:
        if isinstance(out, Relayed):
            out.send_headers()  # flushed before the close below
        if request.transport is not None:
            request.transport.close()
        return
    try:
        await out.write_eof()
    except ConnectionError:
        pass  # the client left at the very end; anything stored stays stored


async def relay(
    request: web.Request,
    upstream: Upstream,
    method: str,
    url: str | URL,
    headers: dict[str, str],
    raw: bytes | None,
    adapter: Adapter,
) -> web.StreamResponse:
    """Send one request upstream and copy the answer back, streaming when it streams."""
    try:
        body = None if raw is None else request_body(raw)
        async with upstream.session.request(
            method, url, data=body, headers=headers, allow_redirects=False
        ) as resp:
            out_headers = upstream.response_headers(resp.headers)
            if not is_sse(resp):
                data = await resp.read()
                return web.Response(status=resp.status, body=data, headers=out_headers)
            out = Relayed(status=resp.status, headers=out_headers)
            await out.prepare(request)
            headers_out = hold_headers(out)
            dropped = client_gone = False
            try:
                async for chunk in resp.content.iter_any():
                    await out.write(chunk)
            except (TimeoutError, aiohttp.ClientError):
                dropped = True
            except ConnectionError:
                client_gone = True
            finally:
                headers_out.cancel()
            await finish_stream(request, out, dropped, client_gone)
            return out
    except TimeoutError as exc:
        return timeout_error(request, adapter, exc)
    except aiohttp.ClientError as exc:
        return unreachable_error(adapter, exc)
