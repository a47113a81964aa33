"""Operations routes: health, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import StoreError
from .errors import error_response
from .openapi import OPENAPI_EXTRA, openapi_document
from .respond import json_response
from .state import ENGINE, METRICS, SETTINGS

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/health/live")
async def live(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    """200 when the store answers a ping within ``store_timeout``, else 503."""
    try:
        async with asyncio.timeout(request.app[SETTINGS].store_timeout):
            await request.app[ENGINE].store.ping()
    except StoreError as exc:
        return error_response(503, "store_unavailable", f"The store does not answer: {exc}")
    except TimeoutError:
        return error_response(503, "store_unavailable", "The store does not answer in time")
    return json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=request.app[METRICS].render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    extra = request.app.get(OPENAPI_EXTRA)
    return json_response(openapi_document(request.app[SETTINGS].max_page_size, extra))
