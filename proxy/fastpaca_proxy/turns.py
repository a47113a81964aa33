"""Which messages of a proxied request are new: aligning a request with the log.

Clients differ: some resend the whole history every time, some send only the
newest message, some send their own trimmed window, and some edit or
regenerate an earlier turn. The request's last message is always new. Of the
ones before it, the longest run that matches consecutive log messages is
history we already hold; the messages after that run are the new turn.

When the matched run ends before the end of the log, the request has diverged
from the log (an edited or regenerated turn): the new turn is appended with
``rewind_to_seq`` at the first log message the request left out, so the LLM
context forgets the abandoned branch while the log keeps it.

Messages are compared by their content (text, tool calls, tool results,
files), not by ids or token counts, so an assistant reply we stored matches
the same reply when the client sends it back.

The common cases are checked first on few rows (``tail_match``): a client
that resends its history sends, before its new message, exactly the newest
log messages; a client that sends only its newest message needs no history.
Only when that check fails is the request aligned against the wider set of
rows ``window_sizes`` names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.model import Message, StoredMessage
from fastpaca_core.toolcalls import RESULT_TYPE, is_call_part, part_call_id

__all__ = ["Alignment", "align", "fingerprint", "tail_match", "tail_size", "window_sizes"]

_TEXT_TYPES = frozenset({"text", "refusal"})


def _part_key(part: dict[str, Any]) -> Any:
    kind = part.get("type")
    if kind in _TEXT_TYPES:
        text = part.get("text")
        return ("text", text) if isinstance(text, str) and text else None
    if kind == RESULT_TYPE:
        return ("result", part_call_id(part), dumps_str(part.get("output")))
    if is_call_part(part) and part_call_id(part) is not None:
        name = part.get("toolName") if kind == "dynamic-tool" else str(kind)[5:]
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


def window_sizes(request_len: int) -> tuple[int, int]:
    """How many log messages to read from the end and from the start."""
    return 2 * request_len + 16, request_len


def tail_size(request_len: int) -> int:
    """How many of the newest log messages ``tail_match`` needs."""
    return max(0, request_len - 1)


def tail_match(
    request: Sequence[Message], log: Sequence[StoredMessage], last_seq: int
) -> Alignment | None:
    """``align``'s answer when the request's messages before its last are
    exactly the newest log messages (or there are none); None when they are
    not, and ``align`` must look further.

    ``log`` holds at least the newest ``tail_size(len(request))`` rows, in seq
    order. A run ending at the log's end covering every request message but
    the last is the longest and latest run ``align`` can find, so the answers
    agree.
    """
    if not request:
        return Alignment([], 0, None)
    wanted = request[:-1]
    if not wanted:
        return Alignment(list(request), 0, None)
    first = last_seq - len(wanted) + 1
    if first < 1:
        return None
    tail = [row for row in log if row.seq >= first]
    if len(tail) != len(wanted) or tail[0].seq != first or tail[-1].seq != last_seq:
        return None
    for message, row in zip(reversed(wanted), reversed(tail), strict=True):
        if fingerprint(message) != fingerprint(row):
            return None
    return Alignment(list(request[-1:]), len(wanted), None)


def align(request: Sequence[Message], log: Sequence[StoredMessage], last_seq: int) -> Alignment:
    """Split ``request`` into held history and the new turn.

    ``log`` is any set of log rows (typically the newest ``2m + 16`` and the
    first ``m``, for a request of ``m`` messages), in seq order.
    """
    if not request:
        return Alignment([], 0, None)
    wanted = [fingerprint(m) for m in request[:-1]]
    if not wanted or not log:
        return Alignment(list(request), 0, None)
    by_seq = {row.seq: fingerprint(row) for row in log}
    best_len, best_end = 0, 0
    for row in log:
        if by_seq[row.seq] != wanted[0]:
            continue
        length = 1
        while length < len(wanted) and by_seq.get(row.seq + length) == wanted[length]:
            length += 1
        end = row.seq + length  # first seq after the matched run
        if (length, end) > (best_len, best_end):
            best_len, best_end = length, end
    if best_len == 0:
        return Alignment(list(request), 0, None)
    rewind = None if best_end > last_seq else best_end
    return Alignment(list(request[best_len:]), best_len, rewind)
