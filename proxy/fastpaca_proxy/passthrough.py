"""The rest of an SDK's calls, passed through unchanged under the same base
URLs: nothing in them is a conversation to store (models, embeddings,
moderations, a stored response by its id).

Each route is served under the provider's base URL with a context, which
plays no part in it, and, for OpenAI, under the plain ``/v1`` too (Anthropic's
plain ``/v1/models`` is OpenAI's). The upstream path is the route's, with
each ``{name}`` one path segment, and the query string goes along.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from .adapters import Adapter
from .relaying import own_error, relay
from .upstream import UPSTREAM, Provider

__all__ = ["AS_IS", "AsIs", "as_is"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class AsIs:
    provider: Provider
    methods: tuple[str, ...]
    path: str  # under the provider's base URL, as the upstream serves it
    summary: str

    def paths(self) -> Iterator[str]:
        yield f"/v1/contexts/{{id}}/{self.provider}/{self.path}"
        if self.provider == "openai":
            yield f"/v1/{self.path}"


AS_IS: tuple[AsIs, ...] = (
    AsIs("openai", ("GET",), "models", "The upstream's models (OpenAI)"),
    AsIs("openai", ("GET",), "models/{model}", "One of the upstream's models (OpenAI)"),
    AsIs("openai", ("GET", "DELETE"), "responses/{rid}", "A response the upstream stored"),
    AsIs("openai", ("GET",), "responses/{rid}/input_items", "A stored response's input items"),
    AsIs("openai", ("POST",), "responses/{rid}/cancel", "Cancel a background response"),
    AsIs("openai", ("POST",), "embeddings", "Embeddings (OpenAI)"),
    AsIs("openai", ("POST",), "moderations", "Moderations (OpenAI)"),
    AsIs("anthropic", ("GET",), "v1/models", "The upstream's models (Anthropic)"),
    AsIs("anthropic", ("GET",), "v1/models/{model}", "One of the upstream's models (Anthropic)"),
)


def as_is(adapter: Adapter, path: str, before: Callable[[web.Request], None]) -> Handler:
    """The handler of one route passed through; ``before`` runs first (the
    request deadline extended by the upstream's timeouts)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        before(request)
        upstream = request.app[UPSTREAM]
        names = {k: v for k, v in request.match_info.items() if k != "id"}
        if any(v in (".", "..") for v in names.values()):  # a segment, not a way up
            return own_error(adapter, 404, "not_found", f"No such resource: {request.path}")
        names = {k: quote(v, safe="") for k, v in names.items()}
        url = upstream.url(adapter.provider, path.format_map(names))
        if request.rel_url.raw_query_string:
            url = f"{url}?{request.rel_url.raw_query_string}"
        headers = upstream.request_headers(adapter.provider, request.headers)
        raw = await request.read()  # (the body limit's middleware may have read it)
        return await relay(request, upstream, request.method, url, headers, raw or None, adapter)

    return handler
