"""Which messages of a proxied request are new: aligning a request with the log.

Clients differ: some resend the whole history every time, some send only the
newest message, some send their own trimmed window, and some edit or
regenerate an earlier turn. The request's last message is always new. Of the
ones before it, the longest start that matches log messages is history we
already hold; the messages after it are the new turn. It matches as runs of
consecutive log messages: after an edited or regenerated turn the context
follows the branch that replaced it, so a client's history skips the
abandoned branch the log keeps (see ``align``).

When the held history ends before the end of the log, the request has
diverged from the log (an edited or regenerated turn): the new turn is
appended with ``rewind_to_seq`` at the first log message after it, so the LLM
context forgets the abandoned branch while the log keeps it. A turn ending in
tool results (regenerating the answer that followed them, or a retry of that
turn) rewinds to the results it sends again: the call keeps a result (see
``compaction.rewind``).

A request of one message holding tool results whose calls the log already
answered, with nothing but the model's replies since, is that too, from a
client that sends only its newest message: it rewinds to the results it
replaces (``_replaced_results``), instead of giving the calls a second
result after their answer, which no provider accepts.

Messages are compared by their content (text, tool calls, tool results,
files), not by ids or token counts, so an assistant reply we stored matches
the same reply when the client sends it back. A turn's tool results are
compared as a set of consecutive result-only messages when the request
groups them unlike the log (a conversation continued on another provider's
route: OpenAI sends a message per result, Anthropic one for all; see
``align``).

The common cases are checked first on few rows (``tail_match``): a client
that resends its history sends, before its new message, exactly the newest
log messages; a client that sends only its newest message needs no history
(its tool results, the newest two rows: the calls they answer or the results
they replace).
Only when that check fails is the request aligned against the wider set of
rows ``window_sizes`` names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.model import Message, StoredMessage
from fastpaca_core.toolcalls import (
    RESULT_TYPE,
    call_name,
    is_call_part,
    part_call_id,
    parts_refs,
)

__all__ = [
    "Alignment",
    "align",
    "fingerprint",
    "name_results",
    "tail_match",
    "tail_size",
    "window_sizes",
]

_TEXT_TYPES = frozenset({"text", "refusal"})


def _part_key(part: dict[str, Any]) -> Any:
    kind = part.get("type")
    if kind in _TEXT_TYPES:
        text = part.get("text")
        return ("text", text) if isinstance(text, str) and text else None
    if kind == RESULT_TYPE:
        return ("result", part_call_id(part), dumps_str(part.get("output")))
    if is_call_part(part) and part_call_id(part) is not None:
        name = call_name(part)
        key: tuple[Any, ...] = ("call", part_call_id(part), name, dumps_str(part.get("input")))
        if part.get("state") in ("output-available", "output-error"):
            key += (dumps_str(part.get("output")),)
        return key
    if kind == "file":
        return ("file", part.get("url"))
    return None  # reasoning, step markers, data parts: not compared


def fingerprint(message: Message | StoredMessage) -> tuple[Any, ...]:
    """The content of a message that a client echoes back unchanged (a
    hashable value: equal for equal content)."""
    parts = message.parts
    if len(parts) == 1 and parts[0].get("type") in _TEXT_TYPES:  # the common case
        text = parts[0].get("text")
        return (message.role, (("text", text),) if isinstance(text, str) and text else ())
    return (message.role, tuple(k for k in map(_part_key, parts) if k is not None))


@dataclass(frozen=True, slots=True)
class Alignment:
    new: list[Message]
    matched: int  # how many request messages the log already holds
    rewind_to_seq: int | None  # set when the request diverged from the log


def name_results(alignment: Alignment, rows: Sequence[StoredMessage]) -> Alignment:
    """``alignment`` with the nameless tool results of its new turn named after
    the calls they answer, found in ``rows`` (log rows read for the alignment).

    A request's converter names a result after a call earlier in the request;
    a client that sends only its newest message (or chains Responses with
    ``previous_response_id``) sends results whose calls only the log holds,
    and they are stored with the same ``toolName`` as when the client resends
    the call. A result whose call is in neither stays as it came.
    """
    if not any(
        p.get("type") == RESULT_TYPE and not p.get("toolName")
        for m in alignment.new
        for p in m.parts
    ):
        return alignment
    names: dict[str, str] = {}
    for row in rows:
        for part in row.parts:
            call_id = part_call_id(part)
            name = call_name(part) if call_id is not None and is_call_part(part) else None
            if call_id is not None and name:
                names[call_id] = name
    if not names:
        return alignment
    new: list[Message] = []
    for message in alignment.new:
        parts = [
            {**p, "toolName": names[p["toolCallId"]]}
            if p.get("type") == RESULT_TYPE
            and not p.get("toolName")
            and p.get("toolCallId") in names
            else p
            for p in message.parts
        ]
        new.append(message if parts == message.parts else replace(message, parts=parts))
    return replace(alignment, new=new)


def window_sizes(request_len: int) -> tuple[int, int]:
    """How many log messages to read from the end and from the start."""
    return 2 * request_len + 16, request_len


def tail_size(request_len: int) -> int:
    """How many of the newest log messages ``tail_match`` needs (for a lone
    message, what ``_replaced_results`` needs in the common cases: the call
    its results answer, or those results and the reply after them)."""
    return request_len - 1 if request_len > 1 else 2


def _replaced_results(message: Message, log: Sequence[StoredMessage], last_seq: int) -> int | None:
    """For a request of only ``message``: the seq of the log message holding
    results ``message`` gives again (a retry or regenerate of the turn that
    sent them, the tool run again...), when only the model's replies follow
    it and none of them calls those ids anew; 0 when ``message`` is new
    (holds no tool result, or answers a call still open); None when ``log``
    (from its end, in seq order) lacks the rows to tell.

    A second result for an answered call is valid nowhere but in place of the
    first, which is therefore what it replaces: the turn is appended with
    ``rewind_to_seq`` at that message. Results the log holds one per message
    (from OpenAI) that ``message`` gives all at once (from Anthropic) are
    replaced from the first of those messages.
    """
    results = parts_refs(message.parts)[1]
    if not results:
        return 0
    expected = last_seq
    found = 0
    left: frozenset[str] = frozenset()  # results found in no row yet, once one is found
    for row in reversed(log):
        if row.seq != expected:
            break  # a gap: the rows before it were not read
        expected -= 1
        calls, answered = parts_refs(row.parts)
        if found:
            # the turn's other results, each in a message of its own
            if calls or not answered <= left or not answered or row.role != "tool":
                return found
            found, left = row.seq, left - answered
            if not left:
                return found
            continue
        if calls & results:
            return 0  # the call (made again) is open: this is its first result
        if answered & results:
            # the rewind keeps every call answered: only results all given again
            if not answered <= results or row.role == "assistant":
                return 0
            if answered == results:
                return row.seq
            found, left = row.seq, results - answered
            continue
        if row.role != "assistant":
            return 0  # the conversation went on after the turn
    return None if expected >= 1 else found


def tail_match(
    request: Sequence[Message], log: Sequence[StoredMessage], last_seq: int
) -> Alignment | None:
    """``align``'s answer when the request's messages before its last are
    exactly the newest log messages (or there are none); None when they are
    not, and ``align`` must look further.

    ``log`` holds at least the newest ``tail_size(len(request))`` rows, in seq
    order. A run ending at the log's end covering every request message but
    the last holds the whole history as late as ``align`` can, so the answers
    agree.
    """
    if not request:
        return Alignment([], 0, None)
    wanted = request[:-1]
    if not wanted:
        replaced = _replaced_results(request[0], log, last_seq)
        if replaced is None:
            return None
        return Alignment(list(request), 0, replaced or None)
    first = last_seq - len(wanted) + 1
    if first < 1:
        return None
    tail = [row for row in log if row.seq >= first]
    if len(tail) != len(wanted) or tail[0].seq != first or tail[-1].seq != last_seq:
        return None
    for message, row in zip(reversed(wanted), reversed(tail), strict=True):
        if not _same(message, row):
            return None
    return Alignment(list(request[-1:]), len(wanted), None)


def _same(message: Message, row: StoredMessage) -> bool:
    """``fingerprint(message) == fingerprint(row)``, the common case (one
    non-empty text part each) without building them. (Not ``parts ==``:
    Python's equality ignores key order and takes ``1`` for ``1.0`` and
    ``True``, which the fingerprints of a tool call's input tell apart.)"""
    if message.role != row.role:
        return False
    ours, theirs = message.parts, row.parts
    if len(ours) == 1 and len(theirs) == 1:
        text, stored = ours[0].get("text"), theirs[0].get("text")
        if (
            type(text) is str
            and type(stored) is str
            and text
            and stored
            and ours[0].get("type") in _TEXT_TYPES
            and theirs[0].get("type") in _TEXT_TYPES
        ):
            return text == stored
    return fingerprint(message) == fingerprint(row)


def _runs(request: Sequence[Message], log: Sequence[StoredMessage], last_seq: int) -> Alignment:
    """``align``'s runs over the messages as they are grouped (``request`` of
    two messages or more, ``log`` not empty)."""
    at: dict[tuple[Any, ...], list[int]] = {}
    for row in log:
        key = fingerprint(row)
        seqs = at.get(key)
        if seqs is None:
            at[key] = [row.seq]
        else:
            seqs.append(row.seq)
    rows: dict[int, StoredMessage] = {}  # read when a run may resume after a branch

    def resumes(seq: int) -> bool:
        """Whether a run may start at ``seq``: a client's message, with content."""
        if not rows:
            rows.update((row.seq, row) for row in log)
        row = rows[seq]
        return row.role != "assistant" and bool(fingerprint(row)[1])

    held: list[int] = []  # where the held start of the history can end, ascending
    count = 0
    for message in request[:-1]:
        seqs = at.get(fingerprint(message))
        if seqs is None:
            break
        if count:
            # the next message of a run, or the first of a run after an abandoned branch
            first = held[0]
            if len(held) == 1 and len(seqs) == 1:  # the common case
                seq = seqs[0]
                if seq - 1 != first and not (seq - 1 > first and resumes(seq)):
                    break
            elif len(held) == 1:
                seqs = [s for s in seqs if s - 1 == first or (s - 1 > first and resumes(s))]
            else:
                after = set(held)
                seqs = [s for s in seqs if s - 1 in after or (s - 1 > first and resumes(s))]
            if not seqs:
                break
        held = seqs
        count += 1
    if count == 0:
        return Alignment(list(request), 0, None)
    end = held[-1]
    return Alignment(list(request[count:]), count, None if end >= last_seq else end + 1)


def align(request: Sequence[Message], log: Sequence[StoredMessage], last_seq: int) -> Alignment:
    """Split ``request`` into held history and the new turn.

    ``log`` is any set of log rows (typically the newest ``2m + 16`` and the
    first ``m``, for a request of ``m`` messages), in seq order.

    History is held as runs of consecutive log messages, each run later in
    the log than the one before; between two runs the log holds a branch the
    context abandoned (a regenerated or edited turn), and the run after it
    starts where the turn that replaced it did: with a client's message (not
    a reply, nor one of only parts not compared). The longest start of the
    request's history held so is held; its last message is placed at the
    latest log message it can be (the context follows the newest branch), and
    a rewind, if any, goes right after it.

    A turn's tool results are one message per result from OpenAI and one
    message for all of them from Anthropic, so a conversation continued on
    the other provider's route brings its held results grouped unlike the
    log's rows. When the request diverges from the log as grouped, it is
    aligned again with every run of consecutive result-only messages taken
    as one, on both sides (``_regrouped``), and held as far as that goes.
    """
    if not request:
        return Alignment([], 0, None)
    if len(request) == 1:
        return Alignment(list(request), 0, _replaced_results(request[0], log, last_seq) or None)
    if not log:
        return Alignment(list(request), 0, None)
    if _result_only(request[0]) and all(map(_result_only, request)):
        # a client that sends only its newest messages, giving a turn's
        # results again a message each (OpenAI): they replace the log's as
        # the same results in one message would
        merged = Message("tool", [p for m in request for p in m.parts])
        rewind = _replaced_results(merged, log, last_seq)
        if rewind:
            return Alignment(list(request), 0, rewind)
    alignment = _runs(request, log, last_seq)
    if alignment.rewind_to_seq is None and alignment.matched:
        return alignment  # held up to the log's end: no grouping holds more
    regrouped = _regrouped(request, log, last_seq)
    return regrouped if regrouped and regrouped.matched > alignment.matched else alignment


def _result_only(message: Message | StoredMessage) -> bool:
    parts = message.parts
    return (
        message.role == "tool" and bool(parts) and all(p.get("type") == RESULT_TYPE for p in parts)
    )


def _merged(messages: Sequence[Message | StoredMessage]) -> list[dict[str, Any]] | None:
    """The results of consecutive result-only ``messages`` in one order (by
    call id: a client converting its history may list them in another), or
    None when they are one message already in that order."""
    parts = [p for m in messages for p in m.parts]
    ordered = sorted(parts, key=lambda p: part_call_id(p) or "")
    return None if len(messages) == 1 and ordered == parts else ordered


def _regrouped(
    request: Sequence[Message], log: Sequence[StoredMessage], last_seq: int
) -> Alignment | None:
    """``_runs`` with each run of consecutive result-only messages merged into
    one, in the request's history and in ``log`` (rows of consecutive seqs
    only); None when that merges nothing or holds nothing.

    The merged log rows get seqs of their own, consecutive where the rows
    were (a gap in ``log`` stays a gap); the answer is mapped back to the
    request's messages and the log's seqs.
    """
    history = request[:-1]
    if not any(m.role == "tool" for m in history) or not any(r.role == "tool" for r in log):
        return None  # results on one side only: merging holds nothing more
    messages: list[Message] = []
    ends: list[int] = []  # per merged request message: how many of ``request`` it ends
    changed = False
    start = 0
    while start < len(history):
        stop = start + 1
        parts = None
        if _result_only(history[start]):
            while stop < len(history) and _result_only(history[stop]):
                stop += 1
            parts = _merged(history[start:stop])
        changed = changed or parts is not None
        message = history[start]
        messages.append(message if parts is None else replace(message, parts=parts))
        ends.append(stop)
        start = stop
    messages.append(request[-1])

    rows: list[StoredMessage] = []
    last_of: dict[int, int] = {}  # a merged row's seq -> the seq of its last log row
    seq = 0
    start = 0
    while start < len(log):
        row = log[start]
        stop = start + 1
        parts = None
        if _result_only(row):
            while (
                stop < len(log)
                and log[stop].seq == log[stop - 1].seq + 1
                and _result_only(log[stop])
            ):
                stop += 1
            parts = _merged(log[start:stop])
        changed = changed or parts is not None
        seq += 1 if start and row.seq == log[start - 1].seq + 1 else 2
        rows.append(replace(row, seq=seq, parts=row.parts if parts is None else parts))
        last_of[seq] = log[stop - 1].seq
        start = stop
    if not changed:
        return None
    alignment = _runs(messages, rows, seq if log[-1].seq >= last_seq else seq + 1)
    if not alignment.matched:
        return None
    matched = ends[alignment.matched - 1]
    rewind = alignment.rewind_to_seq
    return Alignment(
        list(request[matched:]), matched, None if rewind is None else last_of[rewind - 1] + 1
    )
