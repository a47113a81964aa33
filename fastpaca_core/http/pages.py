"""Pages of the log (``/tail``, ``/messages``), sent in parts when they are large.

A page holds up to ``max_page_size`` rows, and a row up to the body limit
(1 MiB by default): read and encoded at once, a page of large rows would take
hundreds of MB and hold the event loop while it is built, and a client that
does not read would keep it all in the transport's buffer. So a page is read
in parts: ``FIRST_ROWS`` rows, then as many as make ``PART_BYTES`` of JSON
by the rows seen so far (at most ``PART_ROWS``), and once its JSON passes
``PART_BYTES`` it is streamed (chunked), each part written only when the
client has taken the one before: a page holds at most ``PART_ROWS`` rows
(64 MiB of the largest) in memory at a time, and a client that takes no
part for ``request_timeout`` seconds is disconnected. A page under ``PART_BYTES`` is
answered as one body with its ``Content-Length``, as before; the bytes are
the same either way.

The log is append-only: the rows of a page's span (fixed by one snapshot of
the context) never change, so reading them in parts gives the same page. A
read that comes back short (a row missing, which an append-only log never
does) is a ``StoreError``; once the status is sent, it or a store that fails
mid-page cuts the connection: the client sees a broken response, never a
page with rows silently left out.
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

__all__ = ["FIRST_ROWS", "PART_BYTES", "PART_ROWS", "page_response"]

log = logging.getLogger("fastpaca.http")

FIRST_ROWS = 16  # rows of a page's first read
PART_ROWS = 64  # rows of a later read, at most
PART_BYTES = 1024 * 1024  # JSON a later read aims at; a page past it is streamed
_OPEN = b'{"messages":['
_CLOSE = b"]}"


async def page_response(
    request: web.Request, engine: Engine, context_id: str, span: tuple[int, int] | None
) -> web.StreamResponse:
    """``{"messages": [...]}`` for the log rows of ``span`` (``(first, last)``)."""
    if span is None:
        return web.Response(body=_OPEN + _CLOSE, content_type="application/json")
    first, last = span
    rows = await _read(engine, context_id, first, min(last, first + FIRST_ROWS - 1))
    pieces = [dumps(row.to_json()) for row in rows]
    size = sum(len(piece) for piece in pieces)
    seq = rows[-1].seq + 1
    while seq <= last and size < PART_BYTES:  # a small page: one body
        count = _rows_for(size // len(pieces))
        part = await _read(engine, context_id, seq, min(last, seq + count - 1))
        more = [dumps(row.to_json()) for row in part]
        pieces += more
        size += sum(len(piece) for piece in more)
        seq = part[-1].seq + 1
    if seq > last:
        body = _OPEN + b",".join(pieces) + _CLOSE
        return web.Response(body=body, content_type="application/json")
    return await _stream(request, engine, context_id, pieces, seq, last)


async def _stream(
    request: web.Request,
    engine: Engine,
    context_id: str,
    pieces: list[bytes],
    seq: int,
    last: int,
) -> web.StreamResponse:
    """The rest of a large page, part by part, each written once the client
    took the part before (``write`` waits for the transport to drain)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    patience = request.app[SETTINGS].request_timeout
    average = sum(len(piece) for piece in pieces) // len(pieces)
    try:
        await asyncio.wait_for(response.write(_OPEN + b",".join(pieces)), patience)
        while seq <= last:
            part = await _read(engine, context_id, seq, min(last, seq + _rows_for(average) - 1))
            encoded = b"," + b",".join(dumps(row.to_json()) for row in part)
            average = len(encoded) // len(part)
            seq = part[-1].seq + 1
            del part
            await asyncio.wait_for(response.write(encoded), patience)
    except ConnectionError:
        return response  # the client left
    except TimeoutError:  # a client that stopped reading
        if request.transport is not None:
            request.transport.close()
        return response
    except FastpacaError as exc:  # the status is sent: cut the body
        log.warning(
            "page cut short", extra={"fields": {"context_id": context_id, "error": exc.code}}
        )
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write(_CLOSE)
    await response.write_eof()
    return response


async def _read(engine: Engine, context_id: str, first: int, last: int) -> list[StoredMessage]:
    rows = await engine.read_log(context_id, first, last)
    if len(rows) != last - first + 1:
        raise StoreError(f"the log holds {len(rows)} rows of seqs {first}..{last}")
    return rows


def _rows_for(average: int) -> int:
    """How many rows of ``average`` bytes make up ``PART_BYTES`` (1 to ``PART_ROWS``)."""
    return min(PART_ROWS, max(1, PART_BYTES // max(1, average)))
