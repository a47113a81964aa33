"""The append: one transaction per append, over the engine's store.

:func:`append_messages` is the body of :meth:`Engine.append` and
:meth:`Engine.append_batch` (they parse their arguments and call it directly,
so the hot path has no extra layer): lock the context row, check the
idempotency key, its status and ``if_version``, insert the rows, update the
row, run the policy, commit; then publish and wake the summariser.

Also the checks every keyed write makes inside its operation (``compact``
too): :func:`admit_keyed` (the context exists; a retry of a committed write
replays its result, tombstone or not; else the context must take writes),
:func:`recall` (a key already used replays its stored result, or answers 422
for another request) and :func:`remember` (store the result under the key).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .calibration import calibrate
from .compaction import rewind, run_policy
from .errors import (
    ContextNotFound,
    ContextTombstoned,
    IdempotencyKeyReused,
    ValidationError,
    VersionConflict,
)
from .events import Event, MessageData
from .model import ContextRecord, Message, StoredMessage, validate_context_id
from .policies.summarize import wants_summary
from .results import AppendResult, check_int, check_key, check_totals, request_hash
from .stores.base import IdempotencyRecord, Tx

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["admit_keyed", "append_messages", "recall", "remember"]


async def append_messages(
    engine: Engine,
    context_id: str,
    messages: list[Message],
    batch: bool,
    if_version: object,
    idempotency_key: object,
    rewind_to_seq: int | None = None,
    calibration: float | None = None,
    *,
    reply_before_sync: bool = False,
) -> AppendResult:
    """Append ``messages`` (parsed) to the context; see :meth:`Engine.append_batch`."""
    validate_context_id(context_id)
    expected = None if if_version is None else check_int(if_version, "if_version", 0)
    key = check_key(idempotency_key)
    counts = await engine.tokens.count_messages(messages)
    digest = ""
    if key is not None:
        digest = request_hash(
            {
                "op": "append_batch" if batch else "append",
                "messages": [m.to_json() for m in messages],
                "if_version": expected,
                "rewind_to_seq": rewind_to_seq,
            }
        )
    now = engine._clock()

    async def op(tx: Tx) -> tuple[AppendResult, list[Event], bool]:
        ctx, replay = await admit_keyed(tx, context_id, key, digest)
        if replay is not None:
            stored = replay["result"]
            return (
                AppendResult(stored["version"], stored["seqs"], stored["token_estimates"], True),
                [],
                False,
            )
        if expected is not None and expected != ctx.version:
            raise VersionConflict(expected, ctx.version)
        if rewind_to_seq is not None and rewind_to_seq > ctx.last_seq + 1:
            raise ValidationError("rewind_to_seq", f"is beyond the next seq ({ctx.last_seq + 1})")
        rows: list[StoredMessage] = []
        for message, count in zip(messages, counts, strict=True):
            ctx.last_seq += 1
            ctx.version += 1
            ctx.total_tokens += count
            rows.append(
                StoredMessage(
                    seq=ctx.last_seq,
                    role=message.role,
                    parts=message.parts,
                    metadata=message.metadata,
                    token_count=count,
                    cum_tokens=ctx.total_tokens,
                    version=ctx.version,
                    inserted_at=now,
                )
            )
        check_totals(ctx, "message.token_count")
        ctx.updated_at = max(now, ctx.updated_at)
        await tx.insert_messages(rows)
        events = [Event(context_id, "message", row.version, MessageData(row)) for row in rows]
        if rewind_to_seq is not None and rewind_to_seq <= rows[0].seq - 1:
            events.append(await rewind(tx, ctx, rows, rewind_to_seq))
        if calibration is not None:
            calibrate(ctx, calibration)
        compaction = await run_policy(tx, ctx, rows)
        if compaction is not None:
            events.append(compaction)
        await tx.save_context(ctx, created=False)
        result = AppendResult(
            ctx.version, [r.seq for r in rows], counts, used_tokens=ctx.used_tokens
        )
        if key is not None:
            await remember(tx, key, digest, now, result)
        return result, events, wants_summary(ctx, trimmed=compaction is not None)

    if reply_before_sync:
        result, events, wake = await engine.store.run(context_id, op, reply_before_sync=True)
    else:  # as a store written before the keyword existed is called
        result, events, wake = await engine.store.run(context_id, op)
    engine.bus.publish(events)
    if wake:
        engine._wake(context_id)
    return result


# -- checks run inside an operation ---------------------------------------------


async def admit_keyed(
    tx: Tx, context_id: str, key: str | None, request_hash: str
) -> tuple[ContextRecord, dict[str, Any] | None]:
    """The locked context row, and the response stored under ``key`` when this
    is a retry of a write that did commit (see :func:`recall`). A retry is
    answered with its first result even once the context was tombstoned since
    (its client may have seen only a failure: the write is stored, and says
    so); any other write to a tombstoned context is refused (409)."""
    ctx = await tx.load_context()
    if ctx is None:
        raise ContextNotFound(context_id)
    replay = None if key is None else await recall(tx, key, request_hash)
    if replay is None and ctx.tombstoned:
        raise ContextTombstoned(context_id)
    return ctx, replay


async def recall(tx: Tx, key: str, request_hash: str) -> dict[str, Any] | None:
    """The response stored under ``key``, or None when the key is new;
    :class:`IdempotencyKeyReused` when it was used for another request."""
    record = await tx.get_idempotency(key)
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused(key)
    return record.response


async def remember(
    tx: Tx, key: str, request_hash: str, now: datetime, result: AppendResult | dict[str, Any]
) -> None:
    """Store ``result`` under ``key``, for :func:`recall` to replay."""
    if isinstance(result, AppendResult):
        body: dict[str, Any] = {
            "version": result.version,
            "seqs": result.seqs,
            "token_estimates": result.token_estimates,
        }
    else:
        body = result
    await tx.put_idempotency(IdempotencyRecord(key, request_hash, {"result": body}, now))
