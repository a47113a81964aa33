"""The one exception tree of Fastpaca.

Every error the core raises is a :class:`FastpacaError`. Each class carries the
machine ``code`` and HTTP ``status`` of the wire contract, so the HTTP layer
maps any of them to ``{"error": code, "message": str(exc)}`` in one place::

    FastpacaError                      500 internal_error
    ├── ValidationError                400 invalid_request     (field, reason)
    ├── ContextNotFound                404 context_not_found
    ├── ConflictError                  409 conflict
    │   ├── VersionConflict            409 conflict            (expected, found)
    │   └── ContextTombstoned          409 context_tombstoned
    ├── IdempotencyKeyReused           422 idempotency_key_reused
    ├── SummaryUpstreamError           502 summary_upstream_error (retryable?)
    └── StoreError                     500 store_error
        └── StoreUnavailable           503 store_unavailable   (retry with backoff)

Driver errors (sqlite3, asyncpg) are translated into ``StoreError`` /
``StoreUnavailable`` at the store boundary with ``raise ... from exc``; LLM SDK
errors (openai, anthropic) into ``SummaryUpstreamError`` in ``summary_llm``.
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "ContextNotFound",
    "ContextTombstoned",
    "FastpacaError",
    "IdempotencyKeyReused",
    "StoreError",
    "StoreUnavailable",
    "SummaryUpstreamError",
    "ValidationError",
    "VersionConflict",
]


class FastpacaError(Exception):
    """Base of every error Fastpaca raises on purpose."""

    code = "internal_error"
    status = 500


class ValidationError(FastpacaError):
    """Bad input: names the offending ``field`` and the ``reason``."""

    code = "invalid_request"
    status = 400

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class ContextNotFound(FastpacaError):
    code = "context_not_found"
    status = 404

    def __init__(self, context_id: str) -> None:
        self.context_id = context_id
        super().__init__(f"Context {context_id!r} not found")


class ConflictError(FastpacaError):
    code = "conflict"
    status = 409


class VersionConflict(ConflictError):
    """``if_version`` did not match the context's current version."""

    def __init__(self, expected: int, found: int) -> None:
        self.expected = expected
        self.found = found
        super().__init__(f"Context version changed (expected {expected}, found {found})")


class ContextTombstoned(ConflictError):
    code = "context_tombstoned"

    def __init__(self, context_id: str) -> None:
        self.context_id = context_id
        super().__init__(f"Context {context_id!r} is tombstoned: its history is read-only")


class IdempotencyKeyReused(FastpacaError):
    """The same idempotency key came back with a different request body."""

    code = "idempotency_key_reused"
    status = 422

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"Idempotency key {key!r} was already used for a different request")


class SummaryUpstreamError(FastpacaError):
    """The LLM asked for a summary failed; ``retryable`` when trying later may help.

    Raised only in the background summariser, never to an API caller.
    """

    code = "summary_upstream_error"
    status = 502

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        self.retryable = retryable
        self.upstream_status = status
        super().__init__(message)


class StoreError(FastpacaError):
    """The store failed in a way that retrying will not fix by itself."""

    code = "store_error"
    status = 500


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; retry with backoff."""

    code = "store_unavailable"
    status = 503
