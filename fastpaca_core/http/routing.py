"""Routes are added through :func:`add_routes`: each with our ``Expect`` handling."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import HttpVersion11, hdrs, web
from aiohttp.web_urldispatcher import MatchInfoError, UrlMappingMatchInfo

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


def expect_everywhere(app: web.Application) -> None:
    """:func:`expect` for requests no route matches, too. The router's
    ``resolve`` is wrapped (a matched request pays one more coroutine call,
    ~0.3 µs)."""
    router = app.router
    resolve = router.resolve

    async def resolve_all(request: web.Request) -> UrlMappingMatchInfo:
        info = await resolve(request)
        if type(info) is MatchInfoError:
            return _Unmatched(info.http_exception)
        return info

    router.resolve = resolve_all  # type: ignore[method-assign]
