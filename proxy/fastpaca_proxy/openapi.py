"""The proxy's part of the OpenAPI document: its routes and request schemas.

:func:`install_proxy` hands it to the canonical API (``OPENAPI_EXTRA``), so
``/openapi.json`` lists the proxy routes when they are served. Request bodies
are described as far as the proxy reads them (the conversation field, the
model, ``stream``); everything else passes to the upstream as sent. Errors
come in the provider's own shape, upstream errors unchanged.
"""

from __future__ import annotations

from typing import Any

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
            "required": ["model", "input"],
            "properties": {
                "model": model,
                "input": text,
                "instructions": text,
                "stream": {"type": "boolean"},
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


def _post(summary: str, body: str, error: str, parameters: list[Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": parameters,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(body)}},
            },
            "responses": _responses(error, streams=True),
        }
    }


def _models(parameters: list[Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": "The upstream's models (OpenAI)",
            "parameters": parameters,
            "responses": _responses("OpenAIError", streams=False),
        }
    }


def proxy_openapi() -> dict[str, Any]:
    """``{"paths": ..., "schemas": ...}`` of the proxy routes."""
    model = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
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
        "/v1/models": _models([]),
        "/v1/models/{model}": _models([model]),
        "/v1/contexts/{id}/openai/models": _models([_ID]),
        "/v1/contexts/{id}/openai/models/{model}": _models([_ID, model]),
    }
    return {"paths": paths, "schemas": _schemas()}
