"""Python client for the Fastpaca HTTP API, mirroring the TypeScript SDK.

::

    from fastpaca_core.client import Client

    with Client("http://127.0.0.1:4000") as fastpaca:
        ctx = fastpaca.context("chat-1", budget=8000, policy={"strategy": "last_n",
                                                              "config": {"limit": 200}})
        ctx.append({"role": "user", "parts": [{"type": "text", "text": "Hi"}]})
        window = ctx.context()

:class:`AsyncClient` has the same methods, awaited. Errors are the exceptions of
:mod:`fastpaca_core.errors` plus the client classes drawn in ``_errors``.
"""

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
from ._async import AsyncClient, AsyncContext
from ._core import DEFAULT_BASE_URL, RetryPolicy
from ._errors import ApiError, ConnectionFailed, PayloadTooLarge, RateLimited, Unauthorized
from ._stream import EventStream, SyncEventStream
from ._sync import Client, Context
from ._types import (
    AppendedMessage,
    AppendResult,
    BatchAppendResult,
    CompactResult,
    ContextInfo,
    ContextPage,
    ContextWindow,
    MessageDict,
    Part,
    Policy,
    Segment,
    StreamEvent,
    SummaryPage,
    WindowFormat,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ApiError",
    "AppendResult",
    "AppendedMessage",
    "AsyncClient",
    "AsyncContext",
    "BatchAppendResult",
    "Client",
    "CompactResult",
    "ConflictError",
    "ConnectionFailed",
    "Context",
    "ContextInfo",
    "ContextNotFound",
    "ContextPage",
    "SummaryPage",
    "ContextTombstoned",
    "ContextWindow",
    "EventStream",
    "FastpacaError",
    "IdempotencyKeyReused",
    "MessageDict",
    "Part",
    "PayloadTooLarge",
    "Policy",
    "RateLimited",
    "RetryPolicy",
    "Segment",
    "StoreError",
    "StoreUnavailable",
    "StreamEvent",
    "SyncEventStream",
    "Unauthorized",
    "ValidationError",
    "VersionConflict",
    "WindowFormat",
]
