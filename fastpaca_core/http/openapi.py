"""The OpenAPI 3.0 document served at ``/openapi.json``: every route and schema.

The test suite runs schemathesis against it, so it stays true to the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .. import __version__

__all__ = ["OPENAPI_EXTRA", "openapi_document"]

OPENAPI_EXTRA = web.AppKey("openapi_extra", dict[str, Any])
"""Routes an app mounts beside the canonical API, for ``/openapi.json``."""

_MAX_INT = 2**63 - 1
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _int(minimum: int = 0, maximum: int = _MAX_INT) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _responses(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    texts = {
        400: "Invalid request (bad JSON, field or query parameter)",
        401: "Missing or invalid API key",
        404: "Context not found",
        409: "Version conflict or tombstoned context",
        413: "Request body too large",
        422: "Idempotency key reused with a different body",
        503: "Store unavailable; retry with backoff",
    }
    out = dict(ok)
    for status in (400, 401, *errors, 503):
        out[str(status)] = _error(texts[status])
    out["default"] = _error("Any other error")
    return out


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^(?!\.{1,2}$)[A-Za-z0-9._:-]{1,256}$"},
}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "description": "A retry with the same key and body returns the first response",
}


def _schemas(max_page: int) -> dict[str, Any]:
    part = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string", "minLength": 1}},
        "additionalProperties": True,
    }
    metadata = {"type": "object", "additionalProperties": True}
    role = {"type": "string", "enum": ["system", "user", "assistant", "tool"]}
    parts = {"type": "array", "items": _ref("Part")}
    stored = _obj(
        ["seq", "role", "parts", "metadata", "token_count", "inserted_at"],
        seq=_int(1),
        role=role,
        parts=parts,
        metadata=metadata,
        token_count=_int(),
        inserted_at={"type": "string", "format": "date-time"},
    )
    window_message = _obj(
        ["role", "parts", "metadata", "token_count", "seq"],
        seq={"type": "integer", "nullable": True},
        role=role,
        parts=parts,
        metadata=metadata,
        token_count=_int(),
        inserted_at={"type": "string", "format": "date-time"},
    )
    segment = _obj(
        ["type", "from_seq", "to_seq"],
        type={"type": "string", "enum": ["summary", "live"]},
        from_seq=_int(),
        to_seq=_int(),
    )
    window_common: dict[str, Any] = {
        "version": _int(),
        "used_tokens": _int(),
        "used_tokens_estimate": _int(),
        "needs_compaction": {"type": "boolean"},
        "segments": {"type": "array", "items": _ref("Segment")},
    }
    policy_input = _obj(
        ["strategy"],
        strategy={"type": "string", "enum": ["last_n", "skip_parts", "manual", "summarize"]},
        config=_obj(
            [],
            limit=_int(1),
            skip_kinds={"type": "array", "items": {"type": "string", "minLength": 1}},
            model={"type": "string", "minLength": 1, "maxLength": 256},
            provider={"type": "string", "enum": ["openai", "anthropic"]},
            keep_last=_int(1),
            instructions={"type": "string", "minLength": 1, "maxLength": 8000},
            max_summary_tokens=_int(1, 100_000),
        ),
    )
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            "additionalProperties": False,
        },
        "Part": part,
        "Message": _obj(
            ["role", "parts"], role=role, parts=parts, metadata=metadata, token_count=_int()
        ),
        "StoredMessage": stored,
        "WindowMessage": window_message,
        "PolicyInput": policy_input,
        "Policy": _obj(
            ["strategy", "config"],
            strategy={"type": "string"},
            config={"type": "object", "additionalProperties": True},
        ),
        "ContextInput": _obj(
            [],
            token_budget=_int(1),
            trigger_ratio={"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1},
            policy=_ref("PolicyInput"),
            metadata=metadata,
        ),
        "Context": _obj(
            [
                "id",
                "token_budget",
                "trigger_ratio",
                "policy",
                "metadata",
                "status",
                "version",
                "last_seq",
                "created_at",
                "updated_at",
            ],
            id={"type": "string"},
            token_budget=_int(1),
            trigger_ratio={"type": "number"},
            policy=_ref("Policy"),
            metadata=metadata,
            status={"type": "string", "enum": ["active", "tombstoned"]},
            version=_int(),
            last_seq=_int(),
            created_at={"type": "string", "format": "date-time"},
            updated_at={"type": "string", "format": "date-time"},
        ),
        "ContextList": _obj(
            ["contexts", "next_cursor"],
            contexts={"type": "array", "items": _ref("Context"), "maxItems": max_page},
            next_cursor={"type": "string", "nullable": True},
        ),
        "AppendRequest": _obj(
            [],
            message=_ref("Message"),
            messages={"type": "array", "items": _ref("Message"), "minItems": 1},
            if_version=_int(),
        ),
        "AppendResult": _obj(
            ["seq", "version", "token_estimate"],
            **{"seq": _int(1), "version": _int(1), "token_estimate": _int()},
        ),
        "BatchAppendResult": _obj(
            ["version", "messages"],
            version=_int(1),
            messages={
                "type": "array",
                "items": _obj(["seq", "token_estimate"], seq=_int(1), token_estimate=_int()),
            },
        ),
        "Messages": _obj(["messages"], messages={"type": "array", "items": _ref("StoredMessage")}),
        "Segment": segment,
        "Window": _obj(
            ["version", "messages", "used_tokens", "needs_compaction", "segments"],
            messages={"type": "array", "items": _ref("WindowMessage")},
            **window_common,
        ),
        "ConvertedWindow": _obj(
            ["version", "messages", "used_tokens", "needs_compaction", "segments", "format"],
            format={"type": "string", "enum": ["openai", "anthropic"]},
            system={"type": "string", "nullable": True},
            messages={"type": "array", "items": {"type": "object"}},
            **window_common,
        ),
        "CompactRequest": _obj(
            ["replacement"],
            replacement={"type": "array", "items": _ref("Message")},
            if_version=_int(),
            up_to_seq=_int(1),
        ),
        "Summary": _obj(
            [
                "version",
                "from_seq",
                "to_seq",
                "provider",
                "model",
                "prompt_sha256",
                "token_count",
                "created_at",
                "message",
            ],
            version=_int(1),
            from_seq=_int(),
            to_seq=_int(),
            provider={"type": "string"},
            model={"type": "string"},
            prompt_sha256={"type": "string", "pattern": "^[0-9a-f]{64}$"},
            token_count=_int(),
            created_at={"type": "string", "format": "date-time"},
            message=_ref("Message"),
        ),
        "SummaryList": _obj(
            ["summaries", "next_cursor"],
            summaries={"type": "array", "items": _ref("Summary"), "maxItems": max_page},
            next_cursor={"type": "string", "nullable": True},
        ),
        "Version": _obj(["version"], version=_int()),
        "Status": _obj(["status"], status={"type": "string"}),
    }


def _paths(max_page: int) -> dict[str, Any]:
    limit = _int(1, max_page)
    ctx_ok = {"200": _json(_ref("Context"), "The context")}
    return {
        "/v1/contexts": {
            "get": {
                "summary": "List contexts, most recently updated first",
                "parameters": [
                    _query("limit", limit, "Page size (default 100)"),
                    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
                ],
                "responses": _responses({"200": _json(_ref("ContextList"), "A page")}),
            }
        },
        "/v1/contexts/{id}": {
            "parameters": [_ID],
            "put": {
                "summary": "Create or update a context (idempotent)",
                "requestBody": _body(_ref("ContextInput")),
                "responses": _responses(ctx_ok, 413),
            },
            "get": {"summary": "Read a context", "responses": _responses(ctx_ok, 404)},
            "delete": {
                "summary": "Tombstone a context (204 for an id never created too)",
                "responses": _responses({"204": {"description": "Tombstoned"}}),
            },
        },
        "/v1/contexts/{id}/metadata": {
            "parameters": [_ID],
            "patch": {
                "summary": "Shallow-merge metadata",
                "requestBody": _body(_obj(["metadata"], metadata={"type": "object"})),
                "responses": _responses(ctx_ok, 404, 413),
            },
        },
        "/v1/contexts/{id}/messages": {
            "parameters": [_ID],
            "post": {
                "summary": "Append one message ({message}) or several ({messages})",
                "parameters": [_IDEMPOTENCY],
                "requestBody": _body(_ref("AppendRequest")),
                "responses": _responses(
                    {
                        "201": _json(
                            {"anyOf": [_ref("AppendResult"), _ref("BatchAppendResult")]},
                            "Appended",
                        )
                    },
                    404,
                    409,
                    413,
                    422,
                ),
            },
            "get": {
                "summary": "Forward paging by seq",
                "parameters": [
                    _query("after_seq", _int(), "Return messages with seq > after_seq"),
                    _query("limit", limit, "Page size (default 100)"),
                ],
                "responses": _responses({"200": _json(_ref("Messages"), "A page")}, 404),
            },
        },
        "/v1/contexts/{id}/tail": {
            "parameters": [_ID],
            "get": {
                "summary": "The page ending offset messages before the newest",
                "parameters": [
                    _query("offset", _int(), "Messages to skip from the newest (default 0)"),
                    _query("limit", limit, "Page size (default 100)"),
                ],
                "responses": _responses({"200": _json(_ref("Messages"), "A page")}, 404),
            },
        },
        "/v1/contexts/{id}/context": {
            "parameters": [_ID],
            "get": {
                "summary": "The LLM context (window)",
                "parameters": [
                    _query("budget_tokens", _int(1), "Budget for this call only"),
                    _query("if_version", _int(), "409 unless this is the current version"),
                    _query(
                        "format",
                        {"type": "string", "enum": ["openai", "anthropic"]},
                        "Convert messages to a model API's shape",
                    ),
                ],
                "responses": _responses(
                    {
                        "200": _json(
                            {"anyOf": [_ref("Window"), _ref("ConvertedWindow")]}, "The window"
                        )
                    },
                    404,
                    409,
                ),
            },
        },
        "/v1/contexts/{id}/compact": {
            "parameters": [_ID],
            "post": {
                "summary": "Replace the window (or its part up to up_to_seq)",
                "parameters": [_IDEMPOTENCY],
                "requestBody": _body(_ref("CompactRequest")),
                "responses": _responses(
                    {"200": _json(_ref("Version"), "Compacted")}, 404, 409, 413, 422
                ),
            },
        },
        "/v1/contexts/{id}/summaries": {
            "parameters": [_ID],
            "get": {
                "summary": "Summary records of the summarize policy, newest first",
                "parameters": [
                    _query("limit", limit, "Page size (default 100)"),
                    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
                ],
                "responses": _responses(
                    {"200": _json(_ref("SummaryList"), "A page of summaries")}, 404
                ),
            },
        },
        "/v1/contexts/{id}/stream": {
            "parameters": [_ID],
            "get": {
                "summary": "Websocket of change events (see docs/http-api.md)",
                "parameters": [
                    _query("cursor", _int(), "Replay events with version > cursor"),
                    _query("include_messages", {"type": "boolean"}, "Message bodies in events"),
                ],
                "responses": _responses(
                    {"101": {"description": "Switching to the websocket protocol"}}, 404
                ),
            },
        },
        "/health/live": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": _json(_ref("Status"), "Serving")},
            }
        },
        "/health/ready": {
            "get": {
                "summary": "Readiness: the store answers",
                "responses": {
                    "200": _json(_ref("Status"), "Ready"),
                    "503": _error("The store does not answer"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0 document")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def openapi_document(
    max_page_size: int = 1000, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The document; ``extra`` (``{"paths", "schemas"}``) adds routes mounted
    beside the canonical API (the proxy's, see ``fastpaca_proxy.openapi``)."""
    extra = extra or {}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Fastpaca", "version": __version__},
        "paths": {**_paths(max_page_size), **extra.get("paths", {})},
        "components": {
            "schemas": {**_schemas(max_page_size), **extra.get("schemas", {})},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }
