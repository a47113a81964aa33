"""Routes are added through :func:`add_routes`: each with our ``Expect`` handling."""

from __future__ import annotations

from aiohttp import HttpVersion11, hdrs, web

__all__ = ["add_routes", "expect"]


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
