"""What the real APIs refuse before generating: bad keys, bad bodies, a missing header.

Each check returns an :class:`ErrorReply` in the provider's terms, or ``None``.
"""

from __future__ import annotations

from typing import Any

from .errors import Family
from .recording import RecordedRequest
from .script import ErrorReply, Protocol


def check_access(
    recorded: RecordedRequest,
    family: Family,
    *,
    api_key: str | None,
    require_anthropic_version: bool,
) -> ErrorReply | None:
    """Authentication and the anthropic-version header, as the real APIs demand."""
    headers = recorded.headers
    if family == "anthropic" and require_anthropic_version:
        if "anthropic-version" not in headers:
            return ErrorReply(400, "anthropic-version: header is required")
    if api_key is None:
        return None
    bearer = headers.get("authorization", "")
    bearer = bearer[7:] if bearer.lower().startswith("bearer ") else ""
    if family == "anthropic":
        if headers.get("x-api-key") == api_key or bearer == api_key:
            return None
        if "x-api-key" not in headers and not bearer:
            return ErrorReply(401, "x-api-key header is required")
        return ErrorReply(401, "invalid x-api-key")
    if bearer == api_key:
        return None
    if not bearer:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        inner = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return ErrorReply(401, message, body={"error": inner})
    return ErrorReply(401, f"Incorrect API key provided: {bearer[:3]}***{bearer[-4:]}.")


def validate(protocol: Protocol, body: Any) -> ErrorReply | None:
    anthropic_family = protocol == "anthropic"
    if not isinstance(body, dict):
        if anthropic_family:
            return ErrorReply(400, "Request body must be a JSON object")
        return ErrorReply(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.",
        )
    if not body.get("model"):
        if anthropic_family:
            return ErrorReply(400, "model: Field required")
        return ErrorReply(400, "you must provide a model parameter")
    if protocol == "openai_chat":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return ErrorReply(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        if not messages:
            return ErrorReply(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
    if anthropic_family:
        if not isinstance(body.get("messages"), list):
            return ErrorReply(400, "messages: Field required")
        if not isinstance(body.get("max_tokens"), int):
            return ErrorReply(400, "max_tokens: Field required")
    return None
