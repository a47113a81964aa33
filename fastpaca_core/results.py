"""What engine operations return, and the small checks they share."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import ValidationError
from .jsonutil import dumps_sorted
from .model import (
    MAX_INT,
    ContextRecord,
    Message,
    SummaryRecord,
    format_time,
    utcnow,
    validate_context_id,
)
from .window import WindowItem, segments_of

__all__ = [
    "AppendResult",
    "ContextPage",
    "SummaryPage",
    "Window",
    "check_int",
    "check_key",
    "check_totals",
    "decode_cursor",
    "decode_version_cursor",
    "encode_cursor",
    "encode_version_cursor",
    "request_hash",
]

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class AppendResult:
    version: int
    seqs: list[int]
    token_estimates: list[int]
    replayed: bool = False  # True when an idempotent retry returned the first result
    used_tokens: int | None = None  # the LLM context's tokens after the append

    def to_json(self, batch: bool = False) -> dict[str, Any]:
        if batch:
            return {
                "version": self.version,
                "messages": [
                    {"seq": s, "token_estimate": t}
                    for s, t in zip(self.seqs, self.token_estimates, strict=True)
                ],
            }
        return {
            "seq": self.seqs[0],
            "version": self.version,
            "token_estimate": self.token_estimates[0],
        }


@dataclass(frozen=True, slots=True)
class Window:
    """The LLM context of one context at one version."""

    version: int
    items: list[WindowItem]
    used_tokens: int  # calibrated: the provider's count, as far as we have learnt it
    needs_compaction: bool
    used_tokens_estimate: int | None = None  # our own count (None: same as used_tokens)

    @property
    def messages(self) -> list[Message]:
        return [item.message for item in self.items]

    @property
    def segments(self) -> list[dict[str, Any]]:
        return segments_of(self.items)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "messages": [item.to_json() for item in self.items],
            "used_tokens": self.used_tokens,
            "used_tokens_estimate": (
                self.used_tokens if self.used_tokens_estimate is None else self.used_tokens_estimate
            ),
            "needs_compaction": self.needs_compaction,
            "segments": self.segments,
        }


@dataclass(frozen=True, slots=True)
class ContextPage:
    contexts: list[ContextRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SummaryPage:
    summaries: list[SummaryRecord]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "summaries": [record.to_json() for record in self.summaries],
            "next_cursor": self.next_cursor,
        }


def check_int(value: object, field_name: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(field_name, "must be an integer")
    if value < minimum or value > 2**63 - 1:
        raise ValidationError(field_name, f"must be an integer >= {minimum}")
    return value


def check_totals(ctx: ContextRecord, field_name: str) -> None:
    """Token totals are stored as 64-bit integers: refuse what would overflow them."""
    if ctx.total_tokens > MAX_INT or ctx.used_tokens_estimate > MAX_INT:
        raise ValidationError(field_name, "would take the context's token total past 2**63-1")


def check_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationError("idempotency_key", f"must be 1-{MAX_KEY_LENGTH} characters")
    if not (key.isascii() and key.isprintable()):
        # as the Idempotency-Key header must be (a key moves between header and
        # body); a PostgreSQL text column cannot hold NUL at all
        raise ValidationError("idempotency_key", "must be printable ASCII")
    return key


def request_hash(payload: dict[str, Any]) -> str:
    """The digest an idempotency key's request is known by. Object keys are
    sorted: a retry whose JSON lists the same keys in another order (a map
    with no fixed order, in Swift or Kotlin, say) is the same request."""
    return hashlib.sha256(dumps_sorted(payload)).hexdigest()


def encode_cursor(updated_at: datetime, context_id: str) -> str:
    raw = f"{format_time(updated_at)}|{context_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, context_id = raw.split("|", 1)
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=utcnow().tzinfo)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValidationError("cursor", "is not a cursor this server issued") from exc
    return when, validate_context_id(context_id, "cursor")


def encode_version_cursor(version: int) -> str:
    return base64.urlsafe_b64encode(f"v|{version}".encode()).decode().rstrip("=")


def decode_version_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, _, number = raw.partition("|")
        if tag != "v" or not number.isascii() or not number.isdigit() or len(number) > 19:
            raise ValueError(raw)
        if int(number) > MAX_INT:  # no stored version is past a 64-bit column's range
            raise ValueError(raw)
        return int(number)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValidationError("cursor", "is not a cursor this server issued") from exc
