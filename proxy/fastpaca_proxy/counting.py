"""Token counts of a request as the proxy would send it: Anthropic's
``POST /v1/messages/count_tokens`` and OpenAI's ``POST /v1/responses/input_tokens``.

With a context, the request is aligned with the log and built as a call
would be (preamble, the compacted LLM context, the new turn; within the
budget), and that is what the upstream counts: the answer is the size of the
next call's prompt, not of the messages the client happened to send (a
client that sends only its newest message would otherwise be told a few
dozen tokens). Nothing is stored, and a context that does not exist yet is
not created: it counts as the empty one it would be. The answer carries the
``X-Fastpaca-*`` headers; ``X-Fastpaca-Used-Tokens`` is the window's tokens
by our count, calibrated. Without a context: pure pass-through.
"""

from __future__ import annotations

from aiohttp import web

from fastpaca_core.errors import FastpacaError
from fastpaca_core.http import ENGINE
from fastpaca_core.http.tenants import public_text
from fastpaca_core.jsonutil import dumps

from .adapters import Adapter
from .flow import _headers, _prepare, _read_json, _scoped
from .preambles import PREAMBLES
from .relaying import own_error, relay
from .upstream import UPSTREAM

__all__ = ["count_call"]


async def count_call(
    request: web.Request, adapter: Adapter, context_id: str | None, path: str
) -> web.StreamResponse:
    """Count ``request`` at the upstream's ``path``, as ``adapter``'s call would send it."""
    raw, body = await _read_json(request, adapter)
    if body is None:
        return own_error(adapter, 400, "invalid_request", "The request body must be a JSON object")
    upstream = request.app[UPSTREAM]
    headers = upstream.request_headers(adapter.provider, request.headers)
    headers["Content-Type"] = "application/json"
    url = upstream.url(adapter.provider, path)
    if context_id is None or adapter.passes_through(body):
        return await relay(request, upstream, "POST", url, headers, raw, adapter)
    engine = request.app[ENGINE]
    try:
        context_id = _scoped(request, adapter, context_id, body)
        preambles = request.app[PREAMBLES] if adapter.chains else None  # as the call would
        turn = await _prepare(
            engine, adapter, context_id, body, defer_count=False, create=False, preambles=preambles
        )
        payload = dumps(adapter.build(body, turn.preamble, turn.window))
    except FastpacaError as exc:
        return own_error(adapter, exc.status, exc.code, public_text(request, str(exc)))
    response = await relay(request, upstream, "POST", url, headers, payload, adapter)
    if not response.prepared:  # (an upstream that streams its count has sent its headers)
        response.headers.update(_headers(request, context_id, turn.ctx.version, turn.used_tokens))
    return response
