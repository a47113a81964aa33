"""Pages of the log (``/tail``, ``/messages``), sent in parts when they are large.

A page holds up to ``max_page_size`` rows, and a row up to a request body
(1 MiB on the REST routes, 32 MiB through the proxy): read and encoded at
once, a page of large rows would take hundreds of MB and hold the event loop
while it is built, and a client that does not read would keep it all in the
transport's buffer. So a page is read in parts of about ``PART_BYTES`` of
stored JSON (``Store.read_messages(max_bytes=)``: up to the row that reaches
it). A page that fits in one part is one read and one body with its
``Content-Length``, as before; a larger one is streamed (chunked), each part
read and written only when the client has taken the one before, so a page
holds one part (``PART_BYTES`` and at most one row more) in memory at a
time, and a client that takes no part for ``request_timeout`` seconds is
disconnected. The bytes are the same either way.

The log is append-only: the rows of a page's span (fixed by one snapshot of
the context) never change, so reading them in parts gives the same page. A
read that comes back without the rows it should start with (a row missing,
which an append-only log never does) is a ``StoreError``; once the status is
sent, it or a store that fails mid-page cuts the connection: the client sees
a broken response, never a page with rows silently left out.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..engine import Engine
from ..errors import FastpacaError, StoreError
from ..jsonutil import dumps
from ..model import StoredMessage
from .state import SETTINGS

__all__ = ["PART_BYTES", "page_response"]

log = logging.getLogger("fastpaca.http")

PART_BYTES = 1024 * 1024  # stored JSON read (and written) at once; a larger page is streamed
_OPEN = b'{"messages":['
_CLOSE = b"]}"


async def page_response(
    request: web.Request, engine: Engine, context_id: str, span: tuple[int, int] | None
) -> web.StreamResponse:
    """``{"messages": [...]}`` for the log rows of ``span`` (``(first, last)``)."""
    if span is None:
        return web.Response(body=_OPEN + _CLOSE, content_type="application/json")
    first, last = span
    rows = await _read(engine, context_id, first, last)
    part = b",".join([dumps(row.to_json()) for row in rows])
    if rows[-1].seq == last:  # a page of one part: one body
        return web.Response(body=_OPEN + part + _CLOSE, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    if request.method == "HEAD":  # the headers alone: body bytes would corrupt the connection
        await response.write_eof()
        return response
    patience = request.app[SETTINGS].request_timeout
    try:
        await asyncio.wait_for(response.write(_OPEN + part), patience)
        while rows[-1].seq < last:
            rows = await _read(engine, context_id, rows[-1].seq + 1, last)
            part = b"," + b",".join([dumps(row.to_json()) for row in rows])
            await asyncio.wait_for(response.write(part), patience)
        await response.write(_CLOSE)
        await response.write_eof()
    except ConnectionError:
        return response  # the client left
    except TimeoutError:  # a client that stopped reading
        _cut(request)
        return response
    except FastpacaError as exc:  # the status is sent: cut the body
        log.warning(
            "page cut short", extra={"fields": {"context_id": context_id, "error": exc.code}}
        )
        _cut(request)
    return response


async def _read(engine: Engine, context_id: str, first: int, last: int) -> list[StoredMessage]:
    """The next part of a page: the rows from ``first`` on, about ``PART_BYTES``."""
    rows = await engine.read_log(context_id, first, last, PART_BYTES)
    if not rows or rows[0].seq != first or rows[-1].seq != first + len(rows) - 1:
        raise StoreError(f"the log does not hold its rows from seq {first} on")
    return rows


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()
