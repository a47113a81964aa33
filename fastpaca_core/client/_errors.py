"""Error responses turned into the exception tree of :mod:`fastpaca_core.errors`.

Where the server's ``error`` code names a core exception, the client raises
that very class, so ``except VersionConflict`` works the same in-process and
over HTTP. What the core tree does not name gets a client class below::

    FastpacaError                         (fastpaca_core.errors)
    ├── ValidationError      400          (field, reason parsed from the message)
    ├── ContextNotFound      404 context_not_found
    ├── ConflictError        409          (a 409 whose message cannot be parsed)
    │   ├── VersionConflict  409 conflict (expected, found)
    │   └── ContextTombstoned 409 context_tombstoned
    ├── IdempotencyKeyReused 422 idempotency_key_reused
    ├── StoreError           500 store_error
    │   └── StoreUnavailable 503 store_unavailable
    ├── ApiError             any other error response (status, code), or an
    │                        answer that is not this API's (unexpected_redirect,
    │                        unexpected_response)
    │   ├── Unauthorized     401
    │   ├── PayloadTooLarge  413
    │   └── RateLimited      429 (retry_after)
    └── ConnectionFailed     the server could not be reached (after retries)

Every exception made from a response carries the response's ``status`` and
``code`` as instance attributes, and ``str(exc)`` is the server's message.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import (
    ConflictError,
    ContextNotFound,
    ContextTombstoned,
    FastpacaError,
    IdempotencyKeyReused,
    StoreError,
    StoreUnavailable,
    ValidationError,
    VersionConflict,
)

__all__ = [
    "ApiError",
    "ConnectionFailed",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "error_from_response",
]

_VERSIONS = re.compile(r"expected (\d+), found (\d+)")


class ApiError(FastpacaError):
    """An error response the core tree has no class for."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class Unauthorized(ApiError):
    """401: the API key is missing or wrong."""


class PayloadTooLarge(ApiError):
    """413: the request body is over the server's limit."""


class RateLimited(ApiError):
    """429, once the retries are spent; ``retry_after`` in seconds when the server said."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None) -> None:
        self.retry_after = retry_after
        super().__init__(status, code, message)


class ConnectionFailed(FastpacaError):
    """The server could not be reached, or the connection broke (after retries)."""

    code = "connection_failed"
    status = 0


def _validation(message: str) -> ValidationError:
    field, sep, reason = message.partition(": ")
    if not sep or " " in field:
        return ValidationError("", message)
    return ValidationError(field, reason)


def error_from_response(
    status: int,
    body: Any,
    *,
    context_id: str | None = None,
    idempotency_key: str | None = None,
    retry_after: float | None = None,
) -> FastpacaError:
    """The exception for an error response (``body``: its decoded JSON, or None)."""
    code = ""
    message = ""
    if isinstance(body, dict):
        code = str(body.get("error") or "")
        message = str(body.get("message") or "")
    code = code or f"http_{status}"
    message = message or f"HTTP {status}"
    exc: FastpacaError
    if code == "conflict" and (match := _VERSIONS.search(message)):
        exc = VersionConflict(int(match.group(1)), int(match.group(2)))
    elif code == "context_tombstoned":
        exc = ContextTombstoned(context_id or "")
    elif code == "context_not_found":
        exc = ContextNotFound(context_id or "")
    elif code == "idempotency_key_reused":
        exc = IdempotencyKeyReused(idempotency_key or "")
    elif code == "store_unavailable" or (status == 503 and code == f"http_{status}"):
        exc = StoreUnavailable()
    elif code == "store_error":
        exc = StoreError()
    elif status == 409:
        exc = ConflictError()
    elif status == 400:
        exc = _validation(message)
    elif status == 401:
        exc = Unauthorized(status, code, message)
    elif status == 413:
        exc = PayloadTooLarge(status, code, message)
    elif status == 429:
        exc = RateLimited(status, code, message, retry_after)
    else:
        exc = ApiError(status, code, message)
    exc.status = status
    exc.code = code
    exc.args = (message,)
    return exc
