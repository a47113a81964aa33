"""The proxy's routes, mounted into the canonical API's application.

Context in the path (an SDK's ``base_url``)::

    /v1/contexts/{id}/openai/chat/completions | responses | models
    /v1/contexts/{id}/anthropic/v1/messages

or in the ``X-Fastpaca-Context`` header on ``/v1/chat/completions``,
``/v1/responses`` and ``/v1/messages``. Without a context: pure pass-through.

Every error answered under these paths, whoever raises it (auth, limits, the
router, the flow), is in the provider's own shape: :func:`install_proxy`
registers the paths as dialects (``fastpaca_core.http.errors.Dialect``), which
also gives them their own body limit (``proxy_max_body_bytes``).

Ids are the caller's tenant's (``fastpaca_core/http/tenants.py``): the same
id under two tenants' keys is two contexts. The request deadline is extended
by the upstream's timeouts, which bound a proxied call instead.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from fastpaca_core.http import SETTINGS
from fastpaca_core.http.errors import DIALECTS, Dialect, Dialects
from fastpaca_core.http.limits import extend_deadline
from fastpaca_core.http.openapi import OPENAPI_EXTRA
from fastpaca_core.http.routing import add_routes

from .adapters import Adapter, AnthropicMessages, OpenAIChat, OpenAIResponses
from .flow import proxy_call, relay
from .openapi import proxy_openapi
from .retries import RETRIES, Retries
from .upstream import UPSTREAM, upstream_ctx

__all__ = ["install_proxy", "routes"]

CONTEXT_HEADER = "X-Fastpaca-Context"

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


async def _call(request: web.Request, adapter: Adapter, in_path: bool) -> web.StreamResponse:
    """``context_id`` is the public id; the flow scopes it to the caller's tenant."""
    _wait_for_upstream(request)
    context_id = request.match_info["id"] if in_path else _from_header(request)
    return await proxy_call(request, adapter, context_id)


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


async def _models(request: web.Request) -> web.StreamResponse:
    _wait_for_upstream(request)
    upstream = request.app[UPSTREAM]
    model = request.match_info.get("model")
    path = "models" if model is None else f"models/{quote(model, safe='')}"
    headers = upstream.request_headers("openai", request.headers)
    return await relay(request, upstream, "GET", upstream.url("openai", path), headers, None, _CHAT)


for _path in (
    "/v1/models",
    "/v1/models/{model}",
    "/v1/contexts/{id}/openai/models",
    "/v1/contexts/{id}/openai/models/{model}",
):
    routes.get(_path)(_models)


# (path pattern, adapter whose error shape the paths answer in), as the router
# matches paths; wider than the routes, so an unknown route or a wrong method
# under a provider's base URL is answered in that provider's shape too.
_DIALECT_PATHS: tuple[tuple[str, Adapter], ...] = (
    (r"/v1/contexts/[^/]*/openai(?:/.*)?", _CHAT),
    (r"/v1/contexts/[^/]*/anthropic(?:/.*)?", _MESSAGES),
    (r"/v1/(?:chat/completions|responses|models)(?:/.*)?", _CHAT),
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
    app.cleanup_ctx.append(upstream_ctx)
    add_routes(app, routes)
    app[OPENAPI_EXTRA] = proxy_openapi()
    return app
