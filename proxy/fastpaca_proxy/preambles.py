"""A Responses call that continues by ``previous_response_id`` keeps the
system / developer items of the chain it continues.

OpenAI carries a request's system and developer input items along a
``previous_response_id`` chain (only ``instructions`` are not carried), so a
client may send its system message with the first call only (LangChain's
``ChatOpenAI(use_previous_response_id=True)`` does). With a context the proxy
does not forward ``previous_response_id`` (the conversation comes from the
log), and a preamble is never logged: so the preamble each relayed response
was produced with is remembered here, by its response id, and a request that
names that id and brings no system / developer items of its own is sent with
it (and passes it on in turn, so chains of any length carry it).

Scoped by context (the tenant's own id): a response id of another context
lends nothing. In this process only: a response id relayed by another
worker, or before a restart, or let go by the bounds is unknown here; its
successor goes without a preamble, as it would without this, and a warning
names the context. Bounded: the ``MAX_RESPONSES`` response ids relayed most
recently, and ``MAX_BYTES`` of preambles in all (the oldest ids go first).
The calls of a context mostly share one preamble, so each distinct preamble
is kept once, as its JSON bytes, whatever number of ids name it; one larger
than ``MAX_PREAMBLE_BYTES`` is not kept.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from fastpaca_core.jsonutil import dumps, loads

__all__ = ["PREAMBLES", "Preambles"]

log = logging.getLogger("fastpaca.proxy")

MAX_RESPONSES = 10_000  # response ids remembered, all contexts together
MAX_BYTES = 16 * 1024 * 1024  # distinct preambles kept (their JSON), all together
MAX_PREAMBLE_BYTES = 1024 * 1024  # a preamble larger is not kept (~250k tokens)
_NONE = b"[]"  # a call without system / developer items: it passes on none


@dataclass(slots=True, eq=False)
class _Kept:
    data: bytes  # the preamble's JSON
    users: int = 0  # response ids that name it


class Preambles:
    def __init__(self, max_responses: int = MAX_RESPONSES, max_bytes: int = MAX_BYTES) -> None:
        self.max_responses = max_responses
        self.max_bytes = max_bytes
        # (context id, response id) -> the preamble it passes on; oldest first
        self._responses: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
        self._kept: dict[bytes, _Kept] = {}  # each distinct preamble once
        self.size = 0  # bytes of the preambles kept

    def remember(self, context_id: str, response_id: Any, preamble: list[dict[str, Any]]) -> None:
        """``preamble`` is what a request naming ``response_id`` (of this
        context) inherits. An id that is not a string is passed over."""
        if not isinstance(response_id, str):
            return
        data = dumps(preamble) if preamble else _NONE
        if len(data) > MAX_PREAMBLE_BYTES:
            return
        key = (context_id, response_id)
        # the same id again (a caching gateway's replay): let the earlier go
        # first, before its preamble, perhaps this one, is looked up
        earlier = self._responses.pop(key, None)
        if earlier is not None:
            self._release(earlier)
        kept = self._kept.get(data)
        if kept is None:
            kept = self._kept[data] = _Kept(data)
            self.size += len(data)
        kept.users += 1
        self._responses[key] = kept
        while len(self._responses) > self.max_responses or self.size > self.max_bytes:
            self._release(self._responses.popitem(last=False)[1])

    def inherited(self, context_id: str, response_id: Any) -> list[dict[str, Any]]:
        """The preamble a request continuing ``response_id`` (its
        ``previous_response_id``) goes with: none when it names none, or one
        not known here (logged)."""
        if not isinstance(response_id, str):
            return []
        kept = self._responses.get((context_id, response_id))
        if kept is None:
            log.warning(
                "previous_response_id not known in this process: "
                "sent without the system / developer items of its chain",
                extra={"fields": {"context_id": context_id}},
            )
            return []
        if kept.data == _NONE:
            return []
        preamble: list[dict[str, Any]] = loads(kept.data)
        return preamble

    def _release(self, kept: _Kept) -> None:
        kept.users -= 1
        if not kept.users:
            del self._kept[kept.data]
            self.size -= len(kept.data)


PREAMBLES = web.AppKey("preambles", Preambles)
