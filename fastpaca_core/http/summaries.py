"""``GET /v1/contexts/{id}/summaries``: the context's summary records, newest first."""

from __future__ import annotations

from aiohttp import web

from .params import context_id, limit_param
from .respond import json_response
from .state import ENGINE

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/v1/contexts/{id}/summaries")
async def list_summaries(request: web.Request) -> web.Response:
    cid = context_id(request)
    limit = limit_param(request, 100)
    cursor = request.query.get("cursor") or None
    page = await request.app[ENGINE].list_summaries(cid, limit, cursor)
    return json_response(page.to_json())
