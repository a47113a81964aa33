"""Routes are added through :func:`add_routes`: each with our ``Expect`` handling."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.web_urldispatcher import (
    AbstractResource,
    DynamicResource,
    MatchedSubAppResource,
    MatchInfoError,
    PlainResource,
    UrlMappingMatchInfo,
)

__all__ = ["add_routes", "expect", "expect_everywhere"]


async def expect(request: web.Request) -> None:
    """The ``Expect`` header: ``100-continue`` is answered as aiohttp does; any
    other expectation is ignored (RFC 9110 allows it), where aiohttp would
    refuse it with a plain-text 417 outside the JSON error shape (it runs
    before the request middleware)."""
    if request.version == HttpVersion11 and (
        request.headers.get("Expect", "").lower() == "100-continue"
    ):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started


def add_routes(app: web.Application, table: web.RouteTableDef) -> None:
    """``app.add_routes(table)``, with :func:`expect` as every route's ``Expect`` handler.

    A ``GET`` route answers ``HEAD`` too, as ``app.add_routes`` has it
    (``allow_head``, default true; RFC 9110: a server supports HEAD wherever
    it supports GET): a load balancer's ``HEAD /health/live`` is not a 405.
    """
    for route in table:
        assert isinstance(route, web.RouteDef), route
        kwargs = dict(route.kwargs)
        allow_head = kwargs.pop("allow_head", True)
        resource = app.router.add_resource(route.path, name=kwargs.pop("name", None))
        if route.method == hdrs.METH_GET and allow_head:
            resource.add_route(hdrs.METH_HEAD, route.handler, expect_handler=expect, **kwargs)
        resource.add_route(route.method, route.handler, expect_handler=expect, **kwargs)


class _Unmatched(MatchInfoError):
    """A 404 / 405 whose ``Expect`` handling is :func:`expect`: aiohttp's
    default refuses an unknown expectation with a plain-text 417 before the
    request middleware could answer the 404 / 405 as JSON."""

    __slots__ = ()

    @property
    def expect_handler(self) -> Callable[[web.Request], Awaitable[None]]:
        return expect


_CONTEXTS = "/v1/contexts/"
_Shortlists = dict[int, tuple[AbstractResource, ...]]


def _shortlists(resources: Iterable[AbstractResource]) -> _Shortlists | None:
    """The routes under ``/v1/contexts/`` by how many ``/`` a path they match
    holds, in the order they were added; None when that would not be exact.

    aiohttp tries every route under ``/v1/contexts/{`` in the order they were
    added (the core's ten, then the proxy's): a proxied call's path failed ten
    regexes first. A plain ``{name}`` matches one segment, never a ``/``, so
    such a route matches only paths of its own ``/`` count; when every route
    the router would try first for a path under the prefix is one of them, the
    first route of a shortlist that matches is the one the router would pick.
    """
    lists: dict[int, list[AbstractResource]] = {}
    for resource in resources:
        if isinstance(resource, MatchedSubAppResource):
            return None  # tried before any other route
        canonical = resource.canonical
        if canonical == _CONTEXTS[:-1] and isinstance(resource, PlainResource):
            continue  # matches that one path only
        if not canonical.startswith(_CONTEXTS[:-1]):
            continue  # tried after the routes under the prefix, if at all
        if not (
            isinstance(resource, DynamicResource)
            and canonical.partition("{")[0] == _CONTEXTS
            and resource.get_info()["pattern"] == DynamicResource(canonical).get_info()["pattern"]
        ):
            return None  # a static route or a sub-application under it, a variable's own regex
        lists.setdefault(canonical.count("/"), []).append(resource)
    return {count: tuple(found) for count, found in lists.items()}


def expect_everywhere(app: web.Application) -> None:
    """:func:`expect` for requests no route matches, too. The router's
    ``resolve`` is wrapped (a matched request pays one more coroutine call,
    ~0.3 µs); under ``/v1/contexts/`` it first tries the routes that could
    match by their ``/`` count only (:func:`_shortlists`), the router's own
    walk answering what they do not (a 404, a 405)."""
    router = app.router
    resolve = router.resolve
    shortlists: _Shortlists | None = None

    async def resolve_all(request: web.Request) -> UrlMappingMatchInfo:
        nonlocal shortlists
        path = request.rel_url.path_safe
        if path.startswith(_CONTEXTS):
            if shortlists is None and router.frozen:  # (routes are added until then)
                shortlists = _shortlists(router.resources()) or {}
            for resource in shortlists.get(path.count("/"), ()) if shortlists else ():
                found, _ = await resource.resolve(request)
                if found is not None:
                    return found
        info = await resolve(request)
        if type(info) is MatchInfoError:
            return _Unmatched(info.http_exception)
        return info

    router.resolve = resolve_all  # type: ignore[method-assign]
