"""The LLM context as a list of items, and the safe ways to cut it.

Every policy and every budgeted read goes through :func:`fit`, which keeps the
guarantees of the wire contract: tokens within the target, a tool call and its
results never split, no orphan tool result, leading system messages kept while
they fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .model import ContextRecord, Message, PrefixEntry, SegmentKind, StoredMessage
from .toolcalls import is_result_part, part_call_id, parts_refs


class RawRow(Protocol):
    """A log row as a store read it, not decoded yet (see ``WindowItem.of_raw``)."""

    @property
    def seq(self) -> int: ...

    @property
    def role(self) -> str: ...

    @property
    def token_count(self) -> int: ...

    def may_refer(self) -> bool:
        """False only if the row certainly holds no tool call or result."""
        ...

    def decode(self) -> StoredMessage: ...


__all__ = [
    "RawRow",
    "WindowItem",
    "apply_items",
    "drop_orphan_results",
    "fit",
    "is_request",
    "items_of",
    "pinned_count",
    "segments_of",
    "valid_cuts",
    "without_results",
]


_NO_REFS: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


class WindowItem:
    """One message of a window: a prefix entry, a live log row, or a new one.

    A live log row's :class:`Message` is built on first use: a plain window
    read renders the stored row and never needs it. A row read for a
    compaction may even come undecoded (:meth:`of_raw`): its parts are parsed
    only if something needs them, and its tool-call ids only if its text holds
    any.
    """

    __slots__ = ("_message", "_refs", "_stored", "_raw", "kind", "from_seq", "to_seq", "in_log")

    def __init__(
        self,
        message: Message | None,
        kind: SegmentKind,
        from_seq: int,
        to_seq: int,
        in_log: bool,  # True: exactly the log row ``from_seq``, unmodified
        stored: StoredMessage | None = None,
    ) -> None:
        assert message is not None or stored is not None
        self._message = message  # token_count is always set
        self._refs: tuple[frozenset[str], frozenset[str]] | None = None
        self.kind: SegmentKind = kind
        self.from_seq = from_seq
        self.to_seq = to_seq
        self.in_log = in_log
        self._stored = stored
        self._raw: RawRow | None = None

    @classmethod
    def of_row(cls, row: StoredMessage) -> WindowItem:
        return cls(None, "live", row.seq, row.seq, True, row)

    @classmethod
    def of_raw(cls, raw: RawRow) -> WindowItem:
        """A live log row as the store read it, decoded when first needed."""
        item = cls.__new__(cls)
        item._message = None
        item._refs = None
        item.kind = "live"
        item.from_seq = item.to_seq = raw.seq
        item.in_log = True
        item._stored = None
        item._raw = raw
        return item

    @property
    def stored(self) -> StoredMessage | None:
        """The log row this item is, unmodified (None for prefix entries and rewrites)."""
        stored = self._stored
        if stored is None and self._raw is not None:
            stored = self._stored = self._raw.decode()
        return stored

    @property
    def is_row(self) -> bool:
        """This item is a log row as stored (``stored`` is not None), decoded or not."""
        return self._stored is not None or self._raw is not None

    @property
    def role(self) -> str:
        if self._message is not None:
            return self._message.role
        if self._stored is None and self._raw is not None:
            return self._raw.role
        return self.message.role

    @property
    def message(self) -> Message:
        message = self._message
        if message is None:
            stored = self.stored
            assert stored is not None
            message = self._message = stored.as_message()
        return message

    @property
    def refs(self) -> tuple[frozenset[str], frozenset[str]]:
        """The ids of the open tool calls this message makes and the results it holds."""
        refs = self._refs
        if refs is None:
            raw = self._raw
            if raw is not None and self._stored is None and not raw.may_refer():
                refs = self._refs = _NO_REFS
            else:
                refs = self._refs = parts_refs(self._parts())
        return refs

    def _parts(self) -> list[dict[str, Any]]:
        if self._message is not None:
            return self._message.parts
        stored = self.stored
        assert stored is not None
        return stored.parts

    @property
    def tokens(self) -> int:
        if self._raw is not None:
            return self._raw.token_count
        if self._stored is not None:
            return self._stored.token_count
        return self.message.token_count or 0

    def rewritten(self, message: Message) -> WindowItem:
        return WindowItem(message, self.kind, self.from_seq, self.to_seq, False, None)

    def to_json(self) -> dict[str, Any]:
        stored = self.stored
        if stored is not None:
            return stored.to_json()
        out = self.message.to_json()
        out["token_count"] = self.tokens
        out["seq"] = self.from_seq if self.kind == "live" else None
        return out

    def __repr__(self) -> str:
        return (
            f"WindowItem({self.kind} {self.from_seq}..{self.to_seq}, in_log={self.in_log}, "
            f"message={self.message!r})"
        )


def items_of(ctx: ContextRecord, rows: Sequence[StoredMessage]) -> list[WindowItem]:
    """The window's items: the prefix, then the live log rows."""
    items = [WindowItem(e.message, e.kind, e.from_seq, e.to_seq, False) for e in ctx.prefix]
    # ``of_row`` inlined: a window read builds one per live row, two calls less each
    new = WindowItem.__new__
    append = items.append
    for row in rows:
        item = new(WindowItem)
        item._message = None
        item._refs = None
        item.kind = "live"
        item.from_seq = item.to_seq = row.seq
        item.in_log = True
        item._stored = row
        item._raw = None
        append(item)
    return items


def apply_items(ctx: ContextRecord, items: Sequence[WindowItem]) -> None:
    """Store ``items`` as ``ctx``'s window: prefix + the longest live tail."""
    start = len(items)
    expected = ctx.last_seq
    while start > 0:
        item = items[start - 1]
        if not (item.in_log and item.from_seq == expected and item.is_row):
            break
        start -= 1
        expected -= 1
    ctx.prefix = [
        PrefixEntry(item.message, item.kind, item.from_seq, item.to_seq) for item in items[:start]
    ]
    if start < len(items):
        first = items[start].stored
        assert first is not None
        ctx.live_from_seq = first.seq
        ctx.live_base_tokens = first.cum_tokens - first.token_count
    else:
        ctx.live_from_seq = ctx.last_seq + 1
        ctx.live_base_tokens = ctx.total_tokens


def segments_of(items: Sequence[WindowItem]) -> list[dict[str, Any]]:
    segments: list[dict[str, Any]] = []
    for item in items:
        if segments:
            last = segments[-1]
            same_summary = (
                item.kind == "summary"
                and last["type"] == "summary"
                and last["from_seq"] == item.from_seq
                and last["to_seq"] == item.to_seq
            )
            next_live = (
                item.kind == "live"
                and last["type"] == "live"
                and item.from_seq == last["to_seq"] + 1
            )
            if same_summary:
                continue
            if next_live:
                last["to_seq"] = item.to_seq
                continue
        segments.append({"type": item.kind, "from_seq": item.from_seq, "to_seq": item.to_seq})
    return segments


def valid_cuts(items: Sequence[WindowItem]) -> list[bool]:
    """``cuts[k]`` is True when keeping ``items[k:]`` splits no call from its result."""
    n = len(items)
    call_at: dict[str, int] = {}
    spans: list[tuple[int, int]] = []
    for index, item in enumerate(items):
        calls, results = item.refs
        for call_id in results:
            if call_id in call_at:
                spans.append((call_at[call_id], index))
        for call_id in calls:
            call_at[call_id] = index
    blocked = [0] * (n + 2)
    for lo, hi in spans:
        if hi > lo:  # cuts lo+1 .. hi separate the pair
            blocked[lo + 1] += 1
            blocked[hi + 1] -= 1
    cuts: list[bool] = []
    running = 0
    for k in range(n + 1):
        running += blocked[k]
        cuts.append(running == 0)
    return cuts


def without_results(item: WindowItem, call_ids: frozenset[str] | set[str]) -> WindowItem | None:
    """``item`` without its result parts answering ``call_ids`` (None when
    nothing else is left of it); ``item`` itself when it holds none of them."""
    if not item.refs[1] & call_ids:
        return item
    parts = [
        p for p in item.message.parts if not (is_result_part(p) and part_call_id(p) in call_ids)
    ]
    if not parts:
        return None
    ratio = len(parts) / len(item.message.parts)
    tokens = min(item.tokens, max(1, round(item.tokens * ratio)))  # never more than before
    return item.rewritten(Message(item.message.role, parts, item.message.metadata, tokens))


def drop_orphan_results(
    items: Sequence[WindowItem], keep_last: int = 0
) -> tuple[list[WindowItem], int]:
    """Remove result parts whose call is not earlier in the window; and how
    many of the last ``keep_last`` items are left."""
    seen_calls: set[str] = set()
    out: list[WindowItem] = []
    kept = 0
    tail_from = len(items) - keep_last
    for index, item in enumerate(items):
        calls, results = item.refs
        orphans = results - seen_calls
        seen_calls |= calls
        if orphans:
            rewritten = without_results(item, orphans)
            if rewritten is None:
                continue
            item = rewritten
        out.append(item)
        kept += index >= tail_from
    return out, kept


def _start(
    rest: Sequence[WindowItem],
    cuts: Sequence[bool],
    used: int,
    budget: int,
    limit: int | None,
    target: int | None,
    limit_target: int | None = None,
    pinned: int = 0,
) -> int:
    """Where the kept run of ``rest`` starts, beside ``pinned`` messages of
    ``used`` tokens. The message limit counts the pinned messages too (as the
    policies' ``due`` does); what a cut over it keeps of ``rest`` does not."""
    n = len(rest)
    suffix = [0] * (n + 1)
    for index in range(n - 1, -1, -1):
        suffix[index] = suffix[index + 1] + rest[index].tokens
    # the first valid cut: 0 in a whole window, but after a pinned request a pair
    # whose call was cut may reach past it (``cuts[n]`` always holds)
    first = next(k for k in range(n + 1) if cuts[k])
    start = first
    if limit is not None and pinned + n > limit:
        keep = limit if limit_target is None else min(limit, limit_target)
        start = next(k for k in range(max(first, n - keep), n + 1) if cuts[k])
        if start == n and n > first:  # the newest group alone exceeds the limit: keep it
            start = max(k for k in range(first, n) if cuts[k])
    goal = min(budget, target if target is not None else budget)
    if used + suffix[start] > goal:
        fits = [k for k in range(start, n + 1) if cuts[k] and used + suffix[k] <= budget]
        start = next((k for k in fits if used + suffix[k] <= goal), n)
        if start == n and len(fits) > 1:  # the target would drop the newest turn: keep it
            start = fits[-2]
    return start


def is_request(item: WindowItem) -> bool:
    """A user message that asks something: not one made only of tool results."""
    if item.role != "user":
        return False
    return any(not is_result_part(part) for part in item.message.parts)


def _pin_request(
    rest: Sequence[WindowItem],
    cuts: Sequence[bool],
    start: int,
    pinned: list[WindowItem],
    used: int,
    budget: int,
    limit: int | None,
    target: int | None,
    limit_target: int | None,
    keep_last: int,
) -> list[WindowItem] | None:
    """The window with the newest user request pinned after ``pinned`` when
    the cut at ``start`` would remove it; None when it stays anyway, or when
    it cannot be pinned (with the turn in flight) within the budget, or only
    at the cost of every message after it."""
    n = len(rest)
    at = n - 1
    while at >= start and not is_request(rest[at]):
        at -= 1
    if at >= start:  # the newest request is kept by the cut
        return None
    while at >= 0 and not is_request(rest[at]):
        at -= 1
    if at < 0:
        return None
    request = rest[at]
    if request.refs[0]:  # a request that calls tools itself: leave it to the cut
        return None
    cut_calls: set[str] = set()
    for item in rest[:at]:
        cut_calls |= item.refs[0]
    own = without_results(request, cut_calls)  # its results whose calls are cut
    if own is None:
        return None
    used += own.tokens
    if used > budget:
        return None
    after = rest[at + 1 :]
    m = len(after)
    sub_cuts = cuts[at + 1 :]
    if m and not any(sub_cuts[:m]):
        return None
    sub = _start(after, sub_cuts, used, budget, limit, target, limit_target, len(pinned) + 1)
    if keep_last and sub > m - keep_last:
        sub = max((k for k in range(m - keep_last + 1) if sub_cuts[k]), default=-1)
        if sub < 0:  # the turn in flight pairs with a call cut before the request
            return None
    if used + sum(item.tokens for item in after[sub:]) > budget:
        return None  # the turn in flight does not fit beside the request: it wins
    if sub == m and m and start < n:
        return None  # the newest message fits only without the request: it wins
    return [*pinned, own, *after[sub:]]


def pinned_count(items: Sequence[WindowItem], end: int | None = None) -> int:
    """How many of the first ``end`` items (default: all) are system messages
    at the front of the window: what a cut pins."""
    stop = len(items) if end is None else end
    count = 0
    while count < stop and items[count].role == "system":
        count += 1
    return count


def _log_leading(items: Sequence[WindowItem], end: int) -> int:
    """How many of the first ``end`` items are the log's own leading system
    messages (its rows 1, 2, ...): not summaries, nor a system message from
    further on in the log that a cut brought to the front."""
    count = 0
    while count < end:
        item = items[count]
        if item.role != "system" or item.kind != "live" or item.from_seq != count + 1:
            break
        count += 1
    return count


_Arrangement = tuple[list[WindowItem], int, list[WindowItem], list[bool], int]


def _arrange(
    work: Sequence[WindowItem],
    pinned_end: int,
    budget: int,
    limit: int | None,
    target: int | None,
    limit_target: int | None,
) -> _Arrangement:
    """``work[:pinned_end]`` pinned (while they fit), and where the cut of the
    rest starts: ``(pinned, their tokens, rest, its valid cuts, start)``."""
    pinned: list[WindowItem] = []
    used = 0
    for item in work[:pinned_end]:
        if used + item.tokens > budget:
            break
        pinned.append(item)
        used += item.tokens
    rest = list(work[pinned_end:])
    n = len(rest)
    cuts = valid_cuts(rest)
    start = _start(rest, cuts, used, budget, limit, target, limit_target, len(pinned))
    if start == n and n > 0 and any(item.kind == "summary" for item in pinned):
        lean = [item for item in pinned if item.kind != "summary"]
        lean_used = sum(item.tokens for item in lean)
        lean_start = _start(rest, cuts, lean_used, budget, limit, target, limit_target, len(lean))
        if lean_start < n:
            pinned, start, used = lean, lean_start, lean_used
    return pinned, used, rest, cuts, start


def fit(
    items: Sequence[WindowItem],
    budget: int,
    *,
    limit: int | None = None,
    target: int | None = None,
    limit_target: int | None = None,
    keep_last: int = 0,
) -> list[WindowItem]:
    """Cut ``items`` to a safe window.

    Leading system messages are pinned (kept while they fit the budget); of the
    rest, the newest contiguous run is kept such that no tool call is separated
    from its results, at most ``limit`` messages remain (unless the newest
    call/result group alone is larger; when there are more than ``limit``,
    at most ``limit_target`` remain), and the tokens stay within ``target``
    (default: the budget) -- or within ``budget`` when only that keeps the
    newest group. A summary among the pinned messages gives way when only
    that keeps the newest group; so does a system message that is at the
    front only because a cut took what was before it in the log. The last
    ``keep_last`` items are never cut (a turn about to be sent), even when
    the budget cannot then be kept.

    The newest user request (a ``user`` message not made only of tool
    results) is pinned too when the cut would remove it: it follows the
    pinned system messages, less any tool results whose calls are cut, and
    counts towards ``limit`` like them; the run kept after it is cut as
    above. It gives way when it does not fit the budget beside the pinned
    messages and the turn in flight, or when only dropping it keeps the
    newest message.
    """
    work, keep_last = drop_orphan_results(items, max(0, keep_last))
    # (the kept tail is never among the pinned messages, which may go)
    pinned_end = pinned_count(work, len(work) - keep_last)
    pinned, used, rest, cuts, start = _arrange(
        work, pinned_end, budget, limit, target, limit_target
    )
    n = len(rest)
    if (start == n and n > 0) or len(pinned) < pinned_end == len(work):
        # the newest message is lost: a system message that is at the front
        # only because a cut took what was before it in the log gives way too
        leading = _log_leading(work, pinned_end)
        if leading < pinned_end:
            other = _arrange(work, leading, budget, limit, target, limit_target)
            if other[4] < len(other[2]):
                pinned, used, rest, cuts, start = other
                n = len(rest)
    if keep_last and start > n - keep_last:
        start = max((k for k in range(n - keep_last + 1) if cuts[k]), default=0)
    if start > 0:
        window = _pin_request(
            rest, cuts, start, pinned, used, budget, limit, target, limit_target, keep_last
        )
        if window is not None:
            return window
    return pinned + rest[start:]
