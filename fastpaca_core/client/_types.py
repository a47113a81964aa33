"""Typed results of the client.

Envelopes (append results, the context window, context info, pages, stream
events) are frozen dataclasses. Messages stay plain dicts, typed as
``TypedDict``: their parts carry arbitrary keys that must round-trip verbatim,
and a dict read from the server can go straight back into ``append``,
``compact`` or an LLM SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict, cast

__all__ = [
    "AppendResult",
    "AppendedMessage",
    "BatchAppendResult",
    "CompactResult",
    "ContextInfo",
    "ContextPage",
    "ContextWindow",
    "MessageDict",
    "Part",
    "Policy",
    "Segment",
    "StreamEvent",
    "WindowFormat",
]

WindowFormat = Literal["ui", "openai", "anthropic"]


class Part(TypedDict, total=False):
    """A message part: a string ``type`` and any other keys, kept verbatim."""

    type: str


class MessageDict(TypedDict):
    """A message: ``role`` and ``parts``; stored messages also have the rest."""

    role: str
    parts: list[dict[str, Any]]
    metadata: NotRequired[dict[str, Any]]
    token_count: NotRequired[int]
    seq: NotRequired[int | None]
    inserted_at: NotRequired[str]


class Policy(TypedDict):
    """``{"strategy": "last_n", "config": {"limit": 200}}`` and the like."""

    strategy: str
    config: dict[str, Any]


class Segment(TypedDict):
    type: Literal["summary", "live"]
    from_seq: int
    to_seq: int


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class AppendResult:
    """``POST .../messages`` with one message: 201 ``{seq, version, token_estimate}``."""

    seq: int
    version: int
    token_estimate: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppendResult:
        return cls(int(data["seq"]), int(data["version"]), int(data["token_estimate"]))


@dataclass(frozen=True, slots=True)
class AppendedMessage:
    seq: int
    token_estimate: int


@dataclass(frozen=True, slots=True)
class BatchAppendResult:
    """A batch append: the new version and one ``(seq, token_estimate)`` per message."""

    version: int
    messages: list[AppendedMessage]

    @property
    def seqs(self) -> list[int]:
        return [m.seq for m in self.messages]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchAppendResult:
        return cls(
            int(data["version"]),
            [AppendedMessage(int(m["seq"]), int(m["token_estimate"])) for m in data["messages"]],
        )


@dataclass(frozen=True, slots=True)
class CompactResult:
    version: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompactResult:
        return cls(int(data["version"]))


@dataclass(frozen=True, slots=True)
class ContextWindow:
    """The LLM context.

    ``messages`` are :class:`MessageDict` s in the default ``ui`` format; with
    ``format="openai"`` they are Chat Completions messages, with
    ``format="anthropic"`` Messages API messages and the system prompt is in
    ``system``. The whole response is kept in ``raw``.
    """

    version: int
    messages: list[dict[str, Any]]
    used_tokens: int
    needs_compaction: bool
    segments: list[Segment]
    format: str = "ui"
    system: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContextWindow:
        return cls(
            version=int(data["version"]),
            messages=list(data.get("messages") or []),
            used_tokens=int(data.get("used_tokens", 0)),
            needs_compaction=bool(data.get("needs_compaction", False)),
            segments=cast(list[Segment], list(data.get("segments") or [])),
            format=str(data.get("format") or "ui"),
            system=data.get("system"),
            raw=dict(data),
        )


@dataclass(frozen=True, slots=True)
class ContextInfo:
    """The context object: configuration, status and counters."""

    id: str
    token_budget: int
    trigger_ratio: float
    policy: Policy
    metadata: dict[str, Any]
    status: str
    version: int
    last_seq: int
    created_at: datetime
    updated_at: datetime

    @property
    def tombstoned(self) -> bool:
        return self.status == "tombstoned"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContextInfo:
        return cls(
            id=str(data["id"]),
            token_budget=int(data["token_budget"]),
            trigger_ratio=float(data["trigger_ratio"]),
            policy=cast(Policy, dict(data["policy"])),
            metadata=dict(data.get("metadata") or {}),
            status=str(data["status"]),
            version=int(data["version"]),
            last_seq=int(data["last_seq"]),
            created_at=_time(data["created_at"]),
            updated_at=_time(data["updated_at"]),
        )


@dataclass(frozen=True, slots=True)
class ContextPage:
    """One page of ``GET /v1/contexts``, most recently updated first."""

    contexts: list[ContextInfo]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContextPage:
        cursor = data.get("next_cursor")
        return cls(
            [ContextInfo.from_json(c) for c in data["contexts"]],
            None if cursor is None else str(cursor),
        )


@dataclass(frozen=True, slots=True)
class SummaryPage:
    """One page of ``GET /v1/contexts/{id}/summaries``, newest first.

    Each summary is the record as the server sends it: ``version``,
    ``from_seq``, ``to_seq``, ``provider``, ``model``, ``prompt_sha256``,
    ``token_count``, ``created_at`` and ``message`` (the summary message).
    """

    summaries: list[dict[str, Any]]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SummaryPage:
        cursor = data.get("next_cursor")
        return cls(
            [dict(s) for s in data["summaries"]],
            None if cursor is None else str(cursor),
        )


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A websocket event: ``type``, ``version`` (None for ``ping``) and its fields.

    ``message`` events carry ``seq`` and ``message``; ``context`` events
    ``needs_compaction`` and ``used_tokens``; ``compaction`` a ``range``;
    ``gap`` ``expected`` and ``actual``. Every field is in ``data``.
    """

    type: str
    version: int | None
    data: dict[str, Any]

    @property
    def seq(self) -> int | None:
        seq = self.data.get("seq")
        return seq if isinstance(seq, int) else None

    @property
    def message(self) -> MessageDict | None:
        message = self.data.get("message")
        return cast(MessageDict, message) if isinstance(message, dict) else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StreamEvent:
        version = data.get("version")
        return cls(
            str(data.get("type", "")),
            version if isinstance(version, int) and not isinstance(version, bool) else None,
            dict(data),
        )
