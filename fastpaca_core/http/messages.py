"""Routes on the log and the LLM context: append, tail, page, window, compact."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import ValidationError
from ..formats import to_anthropic, to_openai_chat
from ..sendable import sendable
from .pages import page_response
from .params import context_id, int_param, limit_param, read_json
from .respond import json_response
from .state import ENGINE

__all__ = ["routes"]

routes = web.RouteTableDef()

_FORMATS = ("ui", "openai", "anthropic")


def _idempotency_key(request: web.Request, body: dict[str, Any]) -> str | None:
    """``Idempotency-Key`` header; ``idempotency_key`` in the body also works."""
    header = request.headers.get("Idempotency-Key")
    if header is not None and not (header.isascii() and header.isprintable()):
        raise ValidationError("Idempotency-Key", "must be printable ASCII")
    in_body = body.get("idempotency_key")
    if header is not None and in_body is not None and header != in_body:
        raise ValidationError(
            "idempotency_key", "differs from the Idempotency-Key header; send one of them"
        )
    key = header if header is not None else in_body
    if key is not None and not isinstance(key, str):
        raise ValidationError("idempotency_key", "must be a string")
    return key


def _replayed(response: web.Response, replayed: bool) -> web.Response:
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@routes.post("/v1/contexts/{id}/messages")
async def append(request: web.Request) -> web.Response:
    cid = context_id(request)
    body = await read_json(request)
    engine = request.app[ENGINE]
    key = _idempotency_key(request, body)
    if_version = body.get("if_version")
    # JSON null means absent (docs/http-api.md): a client whose model sends
    # ``"messages": null`` beside its ``message`` makes a single append
    message, batch = body.get("message"), body.get("messages")
    if batch is not None:
        if message is not None:
            raise ValidationError("message", "send either message or messages, not both")
        result = await engine.append_batch(cid, batch, if_version=if_version, idempotency_key=key)
        return _replayed(json_response(result.to_json(batch=True), 201), result.replayed)
    if message is None:
        raise ValidationError("message", "is required")
    result = await engine.append(cid, message, if_version=if_version, idempotency_key=key)
    return _replayed(json_response(result.to_json(), 201), result.replayed)


@routes.get("/v1/contexts/{id}/tail")
async def tail(request: web.Request) -> web.StreamResponse:
    cid = context_id(request)
    offset = int_param(request, "offset") or 0
    limit = limit_param(request, 100)
    engine = request.app[ENGINE]
    return await page_response(request, engine, cid, await engine.tail_span(cid, offset, limit))


@routes.get("/v1/contexts/{id}/messages")
async def messages(request: web.Request) -> web.StreamResponse:
    cid = context_id(request)
    after_seq = int_param(request, "after_seq") or 0
    limit = limit_param(request, 100)
    engine = request.app[ENGINE]
    span = await engine.messages_span(cid, after_seq, limit)
    return await page_response(request, engine, cid, span)


@routes.get("/v1/contexts/{id}/context")
async def window(request: web.Request) -> web.Response:
    cid = context_id(request)
    budget = int_param(request, "budget_tokens", minimum=1)
    if_version = int_param(request, "if_version")
    fmt = request.query.get("format") or "ui"
    if fmt not in _FORMATS:
        raise ValidationError("format", "must be openai or anthropic (or absent)")
    result = await request.app[ENGINE].window(cid, budget_tokens=budget, if_version=if_version)
    data = result.to_json()
    if fmt == "openai":
        data["format"] = "openai"
        data["messages"] = to_openai_chat(sendable(result.messages))
    elif fmt == "anthropic":
        converted = to_anthropic(sendable(result.messages))
        data["format"] = "anthropic"
        data["system"] = converted.system
        data["messages"] = converted.messages
    return json_response(data)


@routes.post("/v1/contexts/{id}/compact")
async def compact(request: web.Request) -> web.Response:
    cid = context_id(request)
    body = await read_json(request)
    if "replacement" not in body:
        raise ValidationError("replacement", "is required")
    version = await request.app[ENGINE].compact(
        cid,
        body["replacement"],
        if_version=body.get("if_version"),
        up_to_seq=body.get("up_to_seq"),
        idempotency_key=_idempotency_key(request, body),
    )
    return json_response({"version": version})
