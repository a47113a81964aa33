"""Routes on contexts: create/update, read, tombstone, metadata, list."""

from __future__ import annotations

from aiohttp import web

from ..errors import ContextNotFound
from .params import context_id, limit_param, read_json
from .respond import json_response
from .state import ENGINE
from .tenants import context_json, tenant_of

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.put("/v1/contexts/{id}")
async def put_context(request: web.Request) -> web.Response:
    cid = context_id(request)
    body = await read_json(request)
    ctx = await request.app[ENGINE].put_context(
        cid,
        token_budget=body.get("token_budget"),
        trigger_ratio=body.get("trigger_ratio"),
        policy=body.get("policy"),
        metadata=body.get("metadata"),
    )
    return json_response(context_json(request, ctx))


@routes.get("/v1/contexts/{id}")
async def get_context(request: web.Request) -> web.Response:
    ctx = await request.app[ENGINE].get_context(context_id(request))
    return json_response(context_json(request, ctx))


@routes.delete("/v1/contexts/{id}")
async def delete_context(request: web.Request) -> web.Response:
    """204, for an id that was never created too (as the original API answers):
    afterwards, either way, the id holds no context that takes writes."""
    try:
        await request.app[ENGINE].delete_context(context_id(request))
    except ContextNotFound:
        pass
    return web.Response(status=204)


@routes.patch("/v1/contexts/{id}/metadata")
async def patch_metadata(request: web.Request) -> web.Response:
    cid = context_id(request)
    body = await read_json(request)
    ctx = await request.app[ENGINE].update_metadata(cid, body.get("metadata"))
    return json_response(context_json(request, ctx))


@routes.get("/v1/contexts")
async def list_contexts(request: web.Request) -> web.Response:
    limit = limit_param(request, 100)
    cursor = request.query.get("cursor") or None
    page = await request.app[ENGINE].list_contexts(limit, cursor, tenant=tenant_of(request))
    return json_response(
        {
            "contexts": [context_json(request, c) for c in page.contexts],
            "next_cursor": page.next_cursor,
        }
    )
