"""The data model: messages, context configuration, stored records; validation.

Validation happens here, at the engine boundary. Every error is a
:class:`~fastpaca_core.errors.ValidationError` naming the field (as a path such
as ``message.parts[2].type``) and the reason, raised before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from .errors import ValidationError
from .jsonutil import check_json

__all__ = [
    "CONTEXT_ID_PATTERN",
    "DEFAULT_POLICY",
    "DEFAULT_TOKEN_BUDGET",
    "DEFAULT_TRIGGER_RATIO",
    "ROLES",
    "TENANT_PATTERN",
    "ContextRecord",
    "Message",
    "PolicySpec",
    "PrefixEntry",
    "StoredMessage",
    "SummaryRecord",
    "calibrated",
    "format_time",
    "parse_messages",
    "uncalibrated",
    "utcnow",
    "validate_context_id",
    "validate_metadata",
    "validate_public_id",
    "validate_token_budget",
    "trigger_level",
    "validate_trigger_ratio",
]

ROLES = ("system", "user", "assistant", "tool")
CONTEXT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,256}")
TENANT_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_TOKEN_BUDGET = 8000
DEFAULT_TRIGGER_RATIO = 0.7
MAX_INT = 2**63 - 1
_EPSILON = 1e-6  # float error absorbed when (un)calibrating token counts

SegmentKind = Literal["summary", "live"]


def calibrated(tokens: int, factor: float) -> int:
    """Our estimate ``tokens`` as the provider counts it (``factor``: actual / estimate).

    Rounded down (after absorbing float error), so a window cut to
    ``uncalibrated(budget)`` is within ``budget``.
    """
    return tokens if factor == 1.0 else int(tokens * factor + _EPSILON)


def uncalibrated(tokens: float, factor: float) -> int:
    """The estimate that corresponds to ``tokens`` provider tokens (rounded down)."""
    return int(tokens) if factor == 1.0 else int(tokens / factor + _EPSILON)


def trigger_level(budget: int, ratio: float) -> float:
    """``budget * ratio`` as the decimal figures mean it: in floating point
    ``100 * 0.57`` is ``56.99999999999999``, and 57 tokens would be over it.
    A product within 1e-9 of a whole number is that number (``round`` to
    decimals would format the float: a few microseconds on every append)."""
    level = budget * ratio
    whole = round(level)
    return whole if abs(level - whole) <= 1e-9 * max(1.0, level) else level


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``: sorts as text.

    orjson writes the common case ~4x faster than ``isoformat`` (this runs once
    per message of every window read); it leaves out a zero microsecond and
    refuses datetime subclasses (a test's frozen clock), which ``isoformat``
    then writes.
    """
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.microsecond and type(value) is datetime:  # orjson refuses subclasses
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)[1:-1].decode()
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_context_id(value: object, field_name: str = "id") -> str:
    """A context id as the engine keeps it: a public id, or ``tenant/public id``.

    The HTTP layer checks the public part strictly (:func:`validate_public_id`)
    and prefixes a named tenant's ids (see ``http/tenants.py``); ``/`` is not in
    the public charset, so a prefixed id never collides with a public one.
    """
    if isinstance(value, str):
        tenant, slash, public = value.rpartition("/")
        if CONTEXT_ID_PATTERN.fullmatch(public) and (not slash or TENANT_PATTERN.fullmatch(tenant)):
            return value
    raise ValidationError(field_name, "must be 1-256 characters of A-Z a-z 0-9 . _ : -")


def validate_public_id(value: object, field_name: str = "id") -> str:
    """A context id as clients send it: 1-256 characters of ``A-Z a-z 0-9 . _ : -``."""
    if not isinstance(value, str) or not CONTEXT_ID_PATTERN.fullmatch(value):
        raise ValidationError(field_name, "must be 1-256 characters of A-Z a-z 0-9 . _ : -")
    return value


def validate_metadata(value: object, field_name: str = "metadata") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field_name, "must be an object")
    result = dict(value)
    for key in result:
        if not isinstance(key, str):
            raise ValidationError(field_name, "keys must be strings")
    check_json(result, field_name)
    return result


def validate_token_budget(value: object, field_name: str = "token_budget") -> int:
    if not _is_int(value):
        raise ValidationError(field_name, "must be an integer")
    assert isinstance(value, int)
    if value <= 0 or value > MAX_INT:
        raise ValidationError(field_name, "must be greater than 0")
    return value


def validate_trigger_ratio(value: object, field_name: str = "trigger_ratio") -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValidationError(field_name, "must be a number")
    ratio = float(value)
    if not 0.0 < ratio <= 1.0:
        raise ValidationError(field_name, "must be in (0, 1]")
    return ratio


@dataclass(slots=True)
class Message:
    """A message as appended: role, parts (each with a string ``type``), metadata."""

    role: str
    parts: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)
    token_count: int | None = None

    @classmethod
    def parse(cls, value: object, field_name: str = "message") -> Message:
        if isinstance(value, Message):
            return value
        if not isinstance(value, Mapping):
            raise ValidationError(field_name, "must be an object")
        role = value.get("role")
        if role is None:
            raise ValidationError(f"{field_name}.role", "is required")
        if role not in ROLES:
            raise ValidationError(f"{field_name}.role", f"must be one of {', '.join(ROLES)}")
        parts = value.get("parts")
        if not isinstance(parts, list):
            raise ValidationError(f"{field_name}.parts", "must be a list")
        checked: list[dict[str, Any]] = []
        for index, part in enumerate(parts):
            where = f"{field_name}.parts[{index}]"
            if not isinstance(part, Mapping):
                raise ValidationError(where, "must be an object")
            if not isinstance(part.get("type"), str) or not part["type"]:
                raise ValidationError(f"{where}.type", "must be a non-empty string")
            checked.append(dict(part))
        check_json(checked, f"{field_name}.parts")
        metadata = validate_metadata(value.get("metadata"), f"{field_name}.metadata")
        token_count = value.get("token_count")
        if token_count is not None:
            if not _is_int(token_count):
                raise ValidationError(f"{field_name}.token_count", "must be an integer")
            assert isinstance(token_count, int)
            if token_count < 0 or token_count > MAX_INT:
                raise ValidationError(f"{field_name}.token_count", "must be a non-negative integer")
        return cls(role=role, parts=checked, metadata=metadata, token_count=token_count)

    def with_tokens(self, token_count: int | None) -> Message:
        # built directly: ``dataclasses.replace`` costs ~4 us (called per message per call)
        return Message(self.role, self.parts, self.metadata, token_count)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "parts": self.parts, "metadata": self.metadata}
        if self.token_count is not None:
            out["token_count"] = self.token_count
        return out


def parse_messages(values: object, field_name: str = "messages") -> list[Message]:
    if not isinstance(values, list):
        raise ValidationError(field_name, "must be a list")
    if not values:
        raise ValidationError(field_name, "must not be empty")
    return [Message.parse(v, f"{field_name}[{i}]") for i, v in enumerate(values)]


@dataclass(slots=True)
class StoredMessage:
    """A row of the message log."""

    seq: int
    role: str
    parts: list[dict[str, Any]]
    metadata: dict[str, Any]
    token_count: int
    cum_tokens: int  # running total of token_count through this seq
    version: int  # the context version this append produced
    inserted_at: datetime

    def as_message(self) -> Message:
        return Message(self.role, self.parts, self.metadata, self.token_count)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "role": self.role,
            "parts": self.parts,
            "metadata": self.metadata,
            "token_count": self.token_count,
            "inserted_at": format_time(self.inserted_at),
        }


@dataclass(frozen=True, slots=True)
class PolicySpec:
    strategy: str
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "config": self.config}


DEFAULT_POLICY = PolicySpec("last_n", {"limit": 200})


@dataclass(frozen=True, slots=True)
class PrefixEntry:
    """A message of the LLM context that is not a plain live log row.

    ``kind`` is ``summary`` for compaction output standing for ``from_seq..to_seq``
    and ``live`` for a copy of one log message kept ahead of the live range (a
    pinned system message, or a message a policy rewrote).
    """

    message: Message  # token_count always set
    kind: SegmentKind
    from_seq: int
    to_seq: int

    @property
    def tokens(self) -> int:
        return self.message.token_count or 0

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message.to_json(),
            "kind": self.kind,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PrefixEntry:
        m = data["message"]
        message = Message(m["role"], m["parts"], m.get("metadata") or {}, m.get("token_count"))
        return cls(message, data["kind"], int(data["from_seq"]), int(data["to_seq"]))


@dataclass(slots=True)
class ContextRecord:
    """The row of one context: configuration, counters and the window.

    The LLM context is ``prefix`` followed by the log rows
    ``live_from_seq..last_seq``. ``used_tokens`` is arithmetic on two running
    totals, whatever the length of the history.
    """

    id: str
    token_budget: int
    trigger_ratio: float
    policy: PolicySpec
    metadata: dict[str, Any]
    status: str
    version: int
    last_seq: int
    total_tokens: int  # cum_tokens through last_seq
    prefix: list[PrefixEntry]
    live_from_seq: int
    live_base_tokens: int  # cum_tokens through live_from_seq - 1
    created_at: datetime
    updated_at: datetime
    # provider tokens per estimated token, learnt from provider usage (1.0: none yet)
    calibration: float = 1.0
    calibration_samples: int = 0

    @classmethod
    def new(
        cls,
        context_id: str,
        now: datetime,
        *,
        token_budget: int | None = None,
        trigger_ratio: float | None = None,
        policy: PolicySpec | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ContextRecord:
        """A context as it is created: empty, version 0, the defaults where not given."""
        return cls(
            id=context_id,
            token_budget=token_budget or DEFAULT_TOKEN_BUDGET,
            trigger_ratio=trigger_ratio or DEFAULT_TRIGGER_RATIO,
            policy=policy or DEFAULT_POLICY,
            metadata=metadata or {},
            status="active",
            version=0,
            last_seq=0,
            total_tokens=0,
            prefix=[],
            live_from_seq=1,
            live_base_tokens=0,
            created_at=now,
            updated_at=now,
        )

    @property
    def tombstoned(self) -> bool:
        return self.status == "tombstoned"

    @property
    def prefix_tokens(self) -> int:
        return sum(entry.tokens for entry in self.prefix)

    @property
    def used_tokens_estimate(self) -> int:
        """The window's tokens by our own count (given ``token_count``s or tiktoken)."""
        return self.prefix_tokens + self.total_tokens - self.live_base_tokens

    @property
    def used_tokens(self) -> int:
        """The window's tokens as the provider counts them: the estimate, calibrated.

        Budgets and triggers are compared with this figure.
        """
        return calibrated(self.used_tokens_estimate, self.calibration)

    def estimate_limit(self, tokens: float) -> int:
        """The estimate that ``tokens`` provider tokens allow (what ``fit`` is given)."""
        return uncalibrated(tokens, self.calibration)

    def needs_compaction(self, budget: int | None = None) -> bool:
        limit = budget if budget is not None else self.token_budget
        return self.used_tokens > trigger_level(limit, self.trigger_ratio)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "token_budget": self.token_budget,
            "trigger_ratio": self.trigger_ratio,
            "policy": self.policy.to_json(),
            "metadata": self.metadata,
            "status": self.status,
            "version": self.version,
            "last_seq": self.last_seq,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class SummaryRecord:
    """One LLM summary swapped into a context's window; records are never rewritten.

    ``version`` (the context version the swap produced) identifies it;
    ``token_count`` is the provider's completion tokens when it reported them.
    """

    version: int
    from_seq: int
    to_seq: int
    provider: str
    model: str
    prompt_sha256: str
    token_count: int
    created_at: datetime
    message: Message

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "provider": self.provider,
            "model": self.model,
            "prompt_sha256": self.prompt_sha256,
            "token_count": self.token_count,
            "created_at": format_time(self.created_at),
            "message": self.message.to_json(),
        }
