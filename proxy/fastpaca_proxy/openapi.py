"""The proxy's part of the OpenAPI document: its routes and request schemas.

:func:`install_proxy` hands it to the canonical API (``OPENAPI_EXTRA``), so
``/openapi.json`` lists the proxy routes when they are served. Request bodies
are described as far as the proxy reads them (the conversation field, the
model, ``stream``); everything else passes to the upstream as sent. Errors
come in the provider's own shape, upstream errors unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from .passthrough import AS_IS, AsIs

__all__ = ["proxy_openapi"]

_REF = "#/components/schemas/"
_ID_PATTERN = r"^(?!\.{1,2}$)[A-Za-z0-9._:-]{1,256}$"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_CONTEXT_HEADER = {
    "name": "X-Fastpaca-Context",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": _ID_PATTERN},
    "description": "The context to store the conversation in; absent: pure pass-through",
}
_ANTHROPIC_VERSION = {
    "name": "anthropic-version",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "enum": ["2023-06-01"]},
}


def _schemas() -> dict[str, Any]:
    text = {"type": "string", "maxLength": 2000}
    chat_message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
            "content": text,
        },
    }
    anthropic_message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {"role": {"type": "string", "enum": ["user", "assistant"]}, "content": text},
    }
    model = {"type": "string", "minLength": 1, "maxLength": 100}
    return {
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "properties": {
                "model": model,
                "messages": {"type": "array", "items": chat_message, "minItems": 1},
                "stream": {"type": "boolean"},
            },
        },
        "ResponsesRequest": {
            "type": "object",
            "required": ["model"],
            "properties": {
                "model": model,
                "input": text,
                "instructions": text,
                "stream": {"type": "boolean"},
            },
        },
        "AnthropicCountTokensRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "properties": {
                "model": model,
                "system": text,
                "messages": {"type": "array", "items": anthropic_message, "minItems": 1},
            },
        },
        "AnthropicMessagesRequest": {
            "type": "object",
            "required": ["model", "max_tokens", "messages"],
            "properties": {
                "model": model,
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
                "system": text,
                "messages": {"type": "array", "items": anthropic_message, "minItems": 1},
                "stream": {"type": "boolean"},
            },
        },
        "OpenAIError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type"],
                    "properties": {"message": {"type": "string"}, "type": {"type": "string"}},
                }
            },
        },
        "AnthropicError": {
            "type": "object",
            "required": ["type", "error"],
            "properties": {
                "type": {"type": "string", "enum": ["error"]},
                "error": {
                    "type": "object",
                    "required": ["type", "message"],
                    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }


def _responses(error: str, streams: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        ok["text/event-stream"] = {}  # the upstream's events, as they come
    failure = {
        "description": "An error in the provider's shape (the upstream's passed on unchanged)",
        "content": {"application/json": {"schema": _ref(error)}},
    }
    return {
        "200": {"description": "The upstream's answer (SSE when streamed)", "content": ok},
        "400": failure,
        "default": failure,
    }


def _post(
    summary: str, body: str, error: str, parameters: list[Any], streams: bool = True
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": parameters,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(body)}},
            },
            "responses": _responses(error, streams=streams),
        }
    }


def _as_is(route: AsIs, parameters: list[Any]) -> dict[str, Any]:
    """The operations of a route passed through: any body goes as sent."""
    if route.provider == "anthropic":
        parameters = [*parameters, _ANTHROPIC_VERSION]
    # the upstream's answer as it came, whatever its shape (its own errors included)
    answer = {"content": {"application/json": {"schema": {"type": "object"}}}}
    operations: dict[str, Any] = {}
    for method in route.methods:
        operation: dict[str, Any] = {
            "summary": f"{route.summary}, passed through",
            "parameters": parameters,
            "responses": {"default": {"description": "The upstream's answer", **answer}},
        }
        if method == "POST":
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        operations[method.lower()] = operation
    return operations


def _as_is_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in AS_IS:
        names = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ]
        for path in route.paths():
            paths[path] = _as_is(route, [_ID, *names] if path.startswith("/v1/contexts") else names)
    return paths


def proxy_openapi() -> dict[str, Any]:
    """``{"paths": ..., "schemas": ...}`` of the proxy routes."""
    chat = ("OpenAI Chat Completions through the context", "ChatCompletionRequest", "OpenAIError")
    responses = ("OpenAI Responses through the context", "ResponsesRequest", "OpenAIError")
    anthropic = ("Anthropic Messages through the context", "AnthropicMessagesRequest")
    paths = {
        "/v1/contexts/{id}/openai/chat/completions": _post(*chat, [_ID]),
        "/v1/chat/completions": _post(*chat, [_CONTEXT_HEADER]),
        "/v1/contexts/{id}/openai/responses": _post(*responses, [_ID]),
        "/v1/responses": _post(*responses, [_CONTEXT_HEADER]),
        "/v1/contexts/{id}/anthropic/v1/messages": _post(
            *anthropic, "AnthropicError", [_ID, _ANTHROPIC_VERSION]
        ),
        "/v1/messages": _post(*anthropic, "AnthropicError", [_CONTEXT_HEADER, _ANTHROPIC_VERSION]),
    }
    count = ("Anthropic token count of the request as the context would send it",)
    count_body = ("AnthropicCountTokensRequest", "AnthropicError")
    paths["/v1/contexts/{id}/anthropic/v1/messages/count_tokens"] = _post(
        *count, *count_body, [_ID, _ANTHROPIC_VERSION], streams=False
    )
    paths["/v1/messages/count_tokens"] = _post(
        *count, *count_body, [_CONTEXT_HEADER, _ANTHROPIC_VERSION], streams=False
    )
    inputs = ("OpenAI input token count of the request as the context would send it",)
    paths["/v1/contexts/{id}/openai/responses/input_tokens"] = _post(
        *inputs, "ResponsesRequest", "OpenAIError", [_ID], streams=False
    )
    paths["/v1/responses/input_tokens"] = _post(
        *inputs, "ResponsesRequest", "OpenAIError", [_CONTEXT_HEADER], streams=False
    )
    paths.update(_as_is_paths())
    return {"paths": paths, "schemas": _schemas()}
