"""What the fake upstream received, kept for tests to assert on."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .script import Protocol, Reply, Turn


@dataclass
class RecordedRequest:
    """One request as it reached the fake.

    ``headers`` has lower-cased names; ``body`` is the parsed JSON (``None`` when
    the body was empty or not JSON). ``reply`` is the scripted or default reply
    that answered it and ``turn`` what it resolved to (``None`` for errors and
    non-generation endpoints).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    protocol: Protocol | None
    at: float = field(default_factory=time.time)
    status: int = 200
    reply: Reply | None = None
    turn: Turn | None = None

    @property
    def json(self) -> dict[str, Any]:
        """The body as a JSON object (raises ``TypeError`` when it is not one)."""
        if not isinstance(self.body, Mapping):
            raise TypeError(f"request body is not a JSON object: {self.raw_body[:200]!r}")
        return dict(self.body)

    @property
    def stream(self) -> bool:
        return isinstance(self.body, Mapping) and self.body.get("stream") is True

    @property
    def messages(self) -> list[Any]:
        """``messages`` (chat, Anthropic) or ``input`` (Responses, a str made a user item)."""
        if not isinstance(self.body, Mapping):
            return []
        items = self.body.get("input" if self.protocol == "openai_responses" else "messages")
        if isinstance(items, str):
            return [{"role": "user", "content": items}]
        return list(items) if isinstance(items, list) else []
