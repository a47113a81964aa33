"""A client's retry of a proxied call is answered once, not stored twice.

An SDK that gives up on a call (its timeout, a dropped connection) sends the
same request again; the proxy meanwhile carries the first one through (the
upstream answers, the turn is stored). Without this, the retry is a second
upstream call and a second copy of the turn. So each context's recent
non-streamed calls are remembered here from their arrival, by their request
(body, and ``Idempotency-Key`` when sent), and a call that says it is a retry
(``X-Stainless-Retry-Count`` of 1 or more, as the OpenAI and Anthropic SDKs
send, or an ``Idempotency-Key``) of one of them gets its answer instead:
awaited while the call runs, and afterwards only when the answer could not be
delivered to its own client (who gave up waiting), or when the call had an
``Idempotency-Key``; kept for ``KEEP_FOR`` seconds. An answer its client
received is not replayed for a mere retry count: the same request again is a
new turn ("yes", "continue"). A call that stored nothing leaves
the retry to go upstream, as a new call (:meth:`Retries.claim` answers or
registers in one step, so two retries waiting on one failed call do not both
go).

Other calls of the context in between (another tab's turn, a regenerate
that replaced the turn the retry belongs to) do not make a retry a new call:
as with OpenAI's and Anthropic's idempotency keys, a request repeated is
answered as it was the first time, never paid for twice. So a context keeps
its last ``MAX_CALLS`` calls, the newest matching one answering.

In this process only (a retry that reaches another worker is a new call), and
bounded: the ``MAX_CONTEXTS`` contexts called most recently, ``MAX_CALLS``
calls each, answers of up to ``MAX_ANSWER_BYTES`` each and ``MAX_BYTES`` in
all (the oldest go first). A request is remembered by its bytes when small
(compared only when a retry comes: nothing to compute on the hot path), by a
digest when large.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["RETRIES", "Answer", "Retries", "retry_key"]

KEEP_FOR = 600.0  # s an answer is kept for a retry (the SDKs' default timeout)
MAX_CONTEXTS = 1024
MAX_CALLS = 8  # calls remembered per context: a retry may come after others' calls
MAX_ANSWER_BYTES = 1024 * 1024
MAX_BYTES = 16 * 1024 * 1024  # requests and answers kept, all contexts together
_KEPT_AS_IS = 16 * 1024  # requests up to this size are kept as they are, not digested


@dataclass(frozen=True, slots=True)
class Answer:
    """A non-streamed call's answer as its client was (to be) sent it."""

    status: int
    body: bytes
    headers: dict[str, str]

    def response(self) -> web.Response:
        """The answer again, marked as a replay (as the REST API marks its own)."""
        headers = {**self.headers, "Idempotent-Replayed": "true"}
        return web.Response(status=self.status, body=self.body, headers=headers)


@dataclass(slots=True, eq=False)  # one call is itself alone, whatever it holds
class _Call:
    request: bytes  # see retry_key
    answer: asyncio.Future[Answer | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    finished: float | None = None  # time.monotonic() once answered
    size: int = 0  # bytes held
    keyed: bool = False  # sent with an Idempotency-Key: its answer is kept even once received
    waiting: int = 0  # retries awaiting its answer
    earlier: _Call | None = None  # the context's call before this one, still remembered

    def wants_answer(self, delivered: bool) -> bool:
        """Whether anyone could be given this call's answer (else it need not be
        built: the common case, a call its client received)."""
        return self.waiting > 0 or self.keyed or not delivered

    def __post_init__(self) -> None:
        self.size = len(self.request)


def retry_key(headers: Mapping[str, str], body: bytes) -> tuple[bytes, bool, bool]:
    """What a call is remembered by (its body and ``Idempotency-Key``; a large
    body by its digest), whether the call says it is a retry, and whether it
    has a key."""
    key = headers.get("Idempotency-Key", "")
    count = headers.get("X-Stainless-Retry-Count", "0")
    retry = bool(key) or (count.isdigit() and int(count) > 0)
    if len(body) > _KEPT_AS_IS:
        body = hashlib.blake2b(body, digest_size=32).digest()
    return (key.encode() + b"\n" + body) if key else body, retry, bool(key)


class Retries:
    def __init__(self) -> None:
        # each context's newest call (its earlier ones linked from it); the
        # contexts called most recently last
        self._calls: OrderedDict[str, _Call] = OrderedDict()
        self.size = 0  # bytes held by the calls remembered

    async def claim(
        self, context_id: str, request: bytes, retry: bool, keyed: bool = False
    ) -> Answer | _Call:
        """A retry's answer (see the module doc), or this call, registered as the
        context's newest call with no await before it."""
        while retry:
            call = self._find(context_id, request)
            if call is None:
                break
            if call.finished is not None:
                fresh = time.monotonic() - call.finished <= KEEP_FOR
                answer = call.answer.result() if fresh else None
                if answer is not None:
                    return answer
                break
            call.waiting += 1
            try:
                answer = await asyncio.shield(call.answer)
            finally:
                call.waiting -= 1
            if answer is not None:
                return answer
            # that call failed: look again (another retry may have taken its place)
        return self.start(context_id, request, keyed)

    def _find(self, context_id: str, request: bytes) -> _Call | None:
        """The context's newest call of ``request`` (a retry's only: compares bytes)."""
        call = self._calls.get(context_id)
        while call is not None and call.request != request:
            call = call.earlier
        return call

    def start(self, context_id: str, request: bytes, keyed: bool = False) -> _Call:
        """Remember a call as the context's newest. (Its earlier calls are
        usually none: a call whose client got its answer is let go.)"""
        earlier = self._calls.pop(context_id, None)
        call = _Call(request, keyed=keyed, earlier=earlier)
        self._calls[context_id] = call  # the most recently called context last
        self.size += call.size
        if earlier is not None:
            self._cut(call)
        self._bound()
        return call

    def finish(
        self, context_id: str, call: _Call, answer: Answer | None, *, delivered: bool = False
    ) -> None:
        """The call's outcome: its answer when it stored its turn (else None),
        and whether its own client received it."""
        if answer is not None and len(answer.body) > MAX_ANSWER_BYTES:
            answer = None
        _settle(call, answer)  # retries waiting meanwhile get it either way
        call.finished = time.monotonic()
        if answer is None or (delivered and not call.keyed):
            self._forget(context_id, call)  # nothing to give a later retry
            return
        if not self._holds(context_id, call):
            return  # let go meanwhile (the bounds)
        call.size += len(answer.body)
        self.size += len(answer.body)
        self._bound()

    def _holds(self, context_id: str, call: _Call) -> bool:
        kept = self._calls.get(context_id)
        while kept is not None and kept is not call:
            kept = kept.earlier
        return kept is not None

    def _cut(self, newest: _Call) -> None:
        """Let the calls past a context's ``MAX_CALLS`` newest go."""
        call, count = newest, 1
        while call.earlier is not None and count < MAX_CALLS:
            call, count = call.earlier, count + 1
        gone, call.earlier = call.earlier, None
        while gone is not None:
            self.size -= gone.size
            gone = gone.earlier

    def _forget(self, context_id: str, call: _Call) -> None:
        """Let one call go. One still running is not settled here: retries
        waiting on it get its outcome when it finishes (the bounds must not
        send them upstream while it may still store the turn)."""
        newest = self._calls.get(context_id)
        if newest is call:
            if call.earlier is None:
                del self._calls[context_id]
            else:
                self._calls[context_id] = call.earlier
        else:
            later = newest
            while later is not None and later.earlier is not call:
                later = later.earlier
            if later is None:
                return  # let go already
            later.earlier = call.earlier
        call.earlier = None
        self.size -= call.size

    def _forget_context(self, context_id: str) -> None:
        call = self._calls.pop(context_id, None)
        while call is not None:
            self.size -= call.size
            call = call.earlier

    def _bound(self) -> None:
        """Within the bounds, and without answers kept past ``KEEP_FOR``: the
        least recently called context goes first, with all its calls."""
        calls = self._calls
        now = time.monotonic()
        while calls:
            context_id = next(iter(calls))
            newest = calls[context_id]
            expired = newest.finished is not None and now - newest.finished > KEEP_FOR
            if not (expired or len(calls) > MAX_CONTEXTS or self.size > MAX_BYTES):
                return
            self._forget_context(context_id)


def _settle(call: _Call, answer: Answer | None) -> None:
    if not call.answer.done():
        call.answer.set_result(answer)


RETRIES = web.AppKey("retries", Retries)
