"""The proxy's routes, mounted into the canonical API's application.

Context in the path (an SDK's ``base_url``)::

    /v1/contexts/{id}/openai/chat/completions | responses | responses/input_tokens
    /v1/contexts/{id}/anthropic/v1/messages | v1/messages/count_tokens

or in the ``X-Fastpaca-Context`` header on ``/v1/chat/completions``,
``/v1/responses``, ``/v1/messages`` and their token counts. Without a
context: pure pass-through. The rest of an SDK's calls that store nothing
(models, embeddings, moderations, a stored response by id) pass through
unchanged under the same base URLs (``passthrough.AS_IS``).

Every error answered under these paths, whoever raises it (auth, limits, the
router, the flow), is in the provider's own shape: :func:`install_proxy`
registers the paths as dialects (``fastpaca_core.http.errors.Dialect``), which
also gives them their own body limit (``proxy_max_body_bytes``).

Ids are the caller's tenant's (``fastpaca_core/http/tenants.py``): the same
id under two tenants' keys is two contexts. The request deadline is extended
by the upstream's timeouts, which bound a proxied call instead.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from fastpaca_core.http import SETTINGS
from fastpaca_core.http.errors import DIALECTS, Dialect, Dialects
from fastpaca_core.http.limits import extend_deadline
from fastpaca_core.http.openapi import OPENAPI_EXTRA
from fastpaca_core.http.routing import add_routes

from .adapters import Adapter, AnthropicMessages, OpenAIChat, OpenAIResponses
from .counting import count_call
from .flow import proxy_call
from .openapi import proxy_openapi
from .passthrough import AS_IS, as_is
from .preambles import PREAMBLES, Preambles
from .retries import RETRIES, Retries
from .upstream import Provider, upstream_ctx

__all__ = ["install_proxy", "routes"]

CONTEXT_HEADER = "X-Fastpaca-Context"

Answering = Coroutine[Any, Any, web.StreamResponse]

routes = web.RouteTableDef()
_CHAT = OpenAIChat()
_RESPONSES = OpenAIResponses()
_MESSAGES = AnthropicMessages()


def _from_header(request: web.Request) -> str | None:
    return request.headers.get(CONTEXT_HEADER) or None


def _wait_for_upstream(request: web.Request) -> None:
    """A proxied call may take the upstream's timeout on top of the request deadline."""
    settings = request.app[SETTINGS]
    extend_deadline(request, settings.upstream_connect_timeout + settings.upstream_timeout)


def _call(request: web.Request, adapter: Adapter, in_path: bool) -> Answering:
    """``context_id`` is the public id; the flow scopes it to the caller's tenant.
    (The flow's coroutine itself, for the handler to await: a coroutine frame
    less for every suspension and resumption of the call to pass through.)"""
    _wait_for_upstream(request)
    context_id = request.match_info["id"] if in_path else _from_header(request)
    return proxy_call(request, adapter, context_id)


@routes.post("/v1/contexts/{id}/openai/chat/completions")
async def chat_in_path(request: web.Request) -> web.StreamResponse:
    return await _call(request, _CHAT, True)


@routes.post("/v1/chat/completions")
async def chat(request: web.Request) -> web.StreamResponse:
    return await _call(request, _CHAT, False)


@routes.post("/v1/contexts/{id}/openai/responses")
async def responses_in_path(request: web.Request) -> web.StreamResponse:
    return await _call(request, _RESPONSES, True)


@routes.post("/v1/responses")
async def responses(request: web.Request) -> web.StreamResponse:
    return await _call(request, _RESPONSES, False)


@routes.post("/v1/contexts/{id}/anthropic/v1/messages")
async def messages_in_path(request: web.Request) -> web.StreamResponse:
    return await _call(request, _MESSAGES, True)


@routes.post("/v1/messages")
async def messages(request: web.Request) -> web.StreamResponse:
    return await _call(request, _MESSAGES, False)


_COUNT_TOKENS = "v1/messages/count_tokens"
_INPUT_TOKENS = "responses/input_tokens"


def _count(request: web.Request, adapter: Adapter, in_path: bool, path: str) -> Answering:
    """A token count at the upstream's ``path`` (see ``counting``), as ``_call``."""
    _wait_for_upstream(request)
    context_id = request.match_info["id"] if in_path else _from_header(request)
    return count_call(request, adapter, context_id, path)


@routes.post("/v1/contexts/{id}/anthropic/v1/messages/count_tokens")
async def count_tokens_in_path(request: web.Request) -> web.StreamResponse:
    return await _count(request, _MESSAGES, True, _COUNT_TOKENS)


@routes.post("/v1/messages/count_tokens")
async def count_tokens(request: web.Request) -> web.StreamResponse:
    return await _count(request, _MESSAGES, False, _COUNT_TOKENS)


@routes.post("/v1/contexts/{id}/openai/responses/input_tokens")
async def input_tokens_in_path(request: web.Request) -> web.StreamResponse:
    return await _count(request, _RESPONSES, True, _INPUT_TOKENS)


@routes.post("/v1/responses/input_tokens")
async def input_tokens(request: web.Request) -> web.StreamResponse:
    return await _count(request, _RESPONSES, False, _INPUT_TOKENS)


_BY_PROVIDER: dict[Provider, Adapter] = {"openai": _CHAT, "anthropic": _MESSAGES}

for _route in AS_IS:
    _handler = as_is(_BY_PROVIDER[_route.provider], _route.path, _wait_for_upstream)
    for _path in _route.paths():
        for _method in _route.methods:
            routes.route(_method, _path)(_handler)


# (path pattern, adapter whose error shape the paths answer in), as the router
# matches paths; wider than the routes, so an unknown route or a wrong method
# under a provider's base URL is answered in that provider's shape too.
_DIALECT_PATHS: tuple[tuple[str, Adapter], ...] = (
    (r"/v1/contexts/[^/]*/openai(?:/.*)?", _CHAT),
    (r"/v1/contexts/[^/]*/anthropic(?:/.*)?", _MESSAGES),
    (r"/v1/(?:chat/completions|responses|models|embeddings|moderations)(?:/.*)?", _CHAT),
    (r"/v1/messages(?:/.*)?", _MESSAGES),
)


def _register_dialects(dialects: Dialects, max_body_bytes: int) -> None:
    by_provider = {
        adapter.provider: Dialect(adapter.provider, adapter.error_body, max_body_bytes)
        for _, adapter in _DIALECT_PATHS
    }
    for pattern, adapter in _DIALECT_PATHS:
        dialects.add(pattern, by_provider[adapter.provider])


def install_proxy(app: web.Application) -> web.Application:
    """Add the proxy's routes and its upstream session to a canonical API app;
    errors on its paths take the provider's shape, bodies its own limit."""
    _register_dialects(app[DIALECTS], app[SETTINGS].proxy_max_body_bytes)
    app[RETRIES] = Retries()
    app[PREAMBLES] = Preambles()
    app.cleanup_ctx.append(upstream_ctx)
    add_routes(app, routes)
    app[OPENAPI_EXTRA] = proxy_openapi()
    return app
