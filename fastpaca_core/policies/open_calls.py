"""Tool calls still waiting for their result: the calls a compaction must not take away.

``window.valid_cuts`` pairs a call with its result once the result is in the
log. A call whose result has not arrived yet pairs with nothing, so a cut
may fall right after it; but when its result arrives, it would have no call
before it (an orphan result, which the window then drops). Skipping parts,
a manual compaction and a summariser's fold therefore treat such an *open*
call as the start of something still in flight.

A window's items end with the newest message of the log, and a result is
always appended after its call, so a call that no later item answers has no
result in the log yet.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..window import WindowItem

__all__ = ["open_calls"]


def open_calls(items: Sequence[WindowItem]) -> dict[str, int]:
    """The calls among ``items`` that no item answers at or after them, by id:
    the index of the (oldest) item that makes each."""
    waiting: dict[str, int] = {}
    answered: set[str] = set()
    for index in range(len(items) - 1, -1, -1):
        calls, results = items[index].refs
        answered |= results
        for call_id in calls:
            if call_id not in answered:
                waiting[call_id] = index
    return waiting
