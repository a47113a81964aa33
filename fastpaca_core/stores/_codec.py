"""Context rows <-> records, shared by the SQL backends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from ..jsonutil import dumps_str, loads
from ..model import ContextRecord, Message, PolicySpec, PrefixEntry, StoredMessage, SummaryRecord
from ..toolcalls import text_may_refer

__all__ = [
    "CONTEXT_COLUMNS",
    "MESSAGE_COLUMNS",
    "SUMMARY_COLUMNS",
    "RawMessage",
    "context_from_row",
    "context_values",
    "message_from_row",
    "message_values",
    "parse_time",
    "summary_from_row",
    "summary_values",
]

CONTEXT_COLUMNS = (
    "id, token_budget, trigger_ratio, policy, metadata, status, version, last_seq, "
    "total_tokens, prefix, live_from_seq, live_base_tokens, created_at, updated_at, "
    "calibration, calibration_samples"
)
MESSAGE_COLUMNS = "seq, role, parts, metadata, token_count, cum_tokens, version, inserted_at"
SUMMARY_COLUMNS = (
    "version, from_seq, to_seq, provider, model, prompt_sha256, token_count, created_at, message"
)


class Row(Protocol):
    """A database row: a tuple (sqlite3) or an asyncpg Record."""

    def __getitem__(self, index: int, /) -> Any: ...


def parse_time(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(value)  # 3.11+ reads the trailing Z


def context_values(ctx: ContextRecord) -> tuple[Any, ...]:
    """Column values in ``CONTEXT_COLUMNS`` order; times stay datetimes."""
    return (
        ctx.id,
        ctx.token_budget,
        ctx.trigger_ratio,
        dumps_str(ctx.policy.to_json()),
        "{}" if ctx.metadata == {} else dumps_str(ctx.metadata),  # (the common case)
        ctx.status,
        ctx.version,
        ctx.last_seq,
        ctx.total_tokens,
        "[]" if ctx.prefix == [] else dumps_str([entry.to_json() for entry in ctx.prefix]),
        ctx.live_from_seq,
        ctx.live_base_tokens,
        ctx.created_at,
        ctx.updated_at,
        ctx.calibration,
        ctx.calibration_samples,
    )


def message_values(context_id: str, r: StoredMessage, inserted_at: Any) -> tuple[Any, ...]:
    """A log row's values: ``context_id`` then ``MESSAGE_COLUMNS`` in order,
    the insert time as the backend stores it (``inserted_at``)."""
    return (
        context_id,
        r.seq,
        r.role,
        dumps_str(r.parts),
        "{}" if r.metadata == {} else dumps_str(r.metadata),
        r.token_count,
        r.cum_tokens,
        r.version,
        inserted_at,
    )


def context_from_row(row: Row) -> ContextRecord:
    # runs on every write to a context: the common empty metadata and prefix
    # are not parsed (each decode still gets objects of its own)
    policy = loads(row[3])
    metadata = row[4]
    prefix = row[9]
    return ContextRecord(
        id=row[0],
        token_budget=int(row[1]),
        trigger_ratio=float(row[2]),
        policy=PolicySpec(policy["strategy"], policy["config"]),
        metadata={} if metadata == "{}" else loads(metadata),
        status=row[5],
        version=int(row[6]),
        last_seq=int(row[7]),
        total_tokens=int(row[8]),
        prefix=[] if prefix == "[]" else [PrefixEntry.from_json(e) for e in loads(prefix)],
        live_from_seq=int(row[10]),
        live_base_tokens=int(row[11]),
        created_at=parse_time(row[12]),
        updated_at=parse_time(row[13]),
        calibration=float(row[14]),
        calibration_samples=int(row[15]),
    )


def message_from_row(row: Row) -> StoredMessage:
    # positional, and the integer columns as the driver gives them (SQLite and
    # asyncpg both return int): this runs once per row of every window read
    return StoredMessage(
        row[0], row[1], loads(row[2]), loads(row[3]), row[4], row[5], row[6], parse_time(row[7])
    )


class RawMessage:
    """A messages row as the driver returned it (``MESSAGE_COLUMNS``), not decoded:
    a compaction mostly needs each row's tokens and whether it holds a tool call
    (:meth:`~fastpaca_core.window.WindowItem.of_raw`)."""

    __slots__ = ("_values",)

    def __init__(self, values: Row) -> None:
        self._values = values

    @property
    def seq(self) -> int:
        return int(self._values[0])

    @property
    def role(self) -> str:
        return str(self._values[1])

    @property
    def token_count(self) -> int:
        return int(self._values[4])

    def may_refer(self) -> bool:
        # the parts' JSON as the stores write it (``dumps_str``)
        return text_may_refer(self._values[2])

    def decode(self) -> StoredMessage:
        return message_from_row(self._values)


def summary_values(record: SummaryRecord) -> tuple[Any, ...]:
    """Column values in ``SUMMARY_COLUMNS`` order; times stay datetimes."""
    return (
        record.version,
        record.from_seq,
        record.to_seq,
        record.provider,
        record.model,
        record.prompt_sha256,
        record.token_count,
        record.created_at,
        dumps_str(record.message.to_json()),
    )


def summary_from_row(row: Row) -> SummaryRecord:
    m = loads(row[8])
    return SummaryRecord(
        version=int(row[0]),
        from_seq=int(row[1]),
        to_seq=int(row[2]),
        provider=row[3],
        model=row[4],
        prompt_sha256=row[5],
        token_count=int(row[6]),
        created_at=parse_time(row[7]),
        message=Message(m["role"], m["parts"], m.get("metadata") or {}, m.get("token_count")),
    )
