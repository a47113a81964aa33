"""Error bodies in each provider's own shape, with per-status defaults.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``.
Anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
"""

from __future__ import annotations

from typing import Any, Literal

from .script import ErrorReply

Family = Literal["openai", "anthropic"]

_OPENAI_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: ("permission_error", None, "You are not allowed to access this resource."),
    404: ("invalid_request_error", None, "The requested resource does not exist."),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", None, "Conflict."),
    413: ("invalid_request_error", None, "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM). Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
    529: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_ANTHROPIC_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def openai_error_object(err: ErrorReply) -> dict[str, Any]:
    """The inner ``error`` object (also what a chat stream sends mid-stream)."""
    default_type, default_code, default_message = _OPENAI_DEFAULTS.get(
        err.status,
        ("server_error" if err.status >= 500 else "invalid_request_error", None, "Error."),
    )
    return {
        "message": err.message if err.message is not None else default_message,
        "type": err.type or default_type,
        "param": err.param,
        "code": err.code if err.code is not None else default_code,
    }


def anthropic_error_object(err: ErrorReply) -> dict[str, Any]:
    default_type, default_message = _ANTHROPIC_DEFAULTS.get(
        err.status, ("api_error" if err.status >= 500 else "invalid_request_error", "Error.")
    )
    return {
        "type": err.type or default_type,
        "message": err.message if err.message is not None else default_message,
    }


def error_body(family: Family, err: ErrorReply, request_id: str) -> Any:
    """The full HTTP error body (``err.body`` verbatim when given)."""
    if err.body is not None:
        return err.body
    if family == "openai":
        return {"error": openai_error_object(err)}
    return {"type": "error", "error": anthropic_error_object(err), "request_id": request_id}
