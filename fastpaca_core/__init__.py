"""Fastpaca core: the message log, the LLM context, policies and token counting."""

from .engine import AppendResult, ContextPage, Engine, Window
from .errors import (
    ConflictError,
    ContextNotFound,
    ContextTombstoned,
    FastpacaError,
    IdempotencyKeyReused,
    StoreError,
    StoreUnavailable,
    SummaryUpstreamError,
    ValidationError,
    VersionConflict,
)
from .events import Event, EventBus
from .model import ContextRecord, Message, PolicySpec, StoredMessage, SummaryRecord
from .stores.base import Store, open_store
from .summarizer import Summarizer, SummarizerOptions
from .tokens import TokenCounter

__version__ = "0.1.0"

__all__ = [
    "AppendResult",
    "ConflictError",
    "ContextNotFound",
    "ContextPage",
    "ContextRecord",
    "ContextTombstoned",
    "Engine",
    "Event",
    "EventBus",
    "FastpacaError",
    "IdempotencyKeyReused",
    "Message",
    "PolicySpec",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredMessage",
    "Summarizer",
    "SummarizerOptions",
    "SummaryRecord",
    "SummaryUpstreamError",
    "TokenCounter",
    "ValidationError",
    "VersionConflict",
    "Window",
    "__version__",
    "open_store",
]
