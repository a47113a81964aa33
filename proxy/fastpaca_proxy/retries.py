"""A client's retry of a proxied call is answered once, not stored twice.

An SDK that gives up on a call (its timeout, a dropped connection) sends the
same request again; the proxy meanwhile carries the first one through (the
upstream answers, the turn is stored). Without this, the retry is a second
upstream call and a second copy of the turn. So each context's latest
non-streamed call is remembered here by a digest of its request (body, and
``Idempotency-Key`` when sent), and a retry of it, one that says so
(``X-Stainless-Retry-Count`` of 1 or more, as the OpenAI and Anthropic SDKs
send, or the same ``Idempotency-Key``), is answered with the first call's
answer: awaited while that call runs, kept for ``KEEP_FOR`` seconds once it
stored its turn. A first call that stored nothing (an upstream error) leaves
the retry to go upstream as any call does.

In this process only (a retry that reaches another worker is a new call), and
bounded: the latest call of the ``MAX_CONTEXTS`` contexts called most recently,
answers of up to ``MAX_ANSWER_BYTES`` each.
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
MAX_ANSWER_BYTES = 1024 * 1024


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


@dataclass(slots=True)
class _Call:
    digest: bytes
    answer: asyncio.Future[Answer | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    finished: float | None = None  # time.monotonic() once answered


def retry_key(headers: Mapping[str, str], body: bytes) -> tuple[bytes, bool]:
    """The digest a call is remembered by, and whether the call is a retry."""
    key = headers.get("Idempotency-Key", "")
    count = headers.get("X-Stainless-Retry-Count", "0")
    retry = bool(key) or (count.isdigit() and int(count) > 0)
    digest = hashlib.blake2b(body, digest_size=16, key=key.encode()[:64]).digest()
    return digest, retry


class Retries:
    def __init__(self) -> None:
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    async def answer(self, context_id: str, digest: bytes) -> Answer | None:
        """The answer of the context's latest call when it had this digest
        (awaited while that call runs); None when there is none to give."""
        call = self._calls.get(context_id)
        if call is None or call.digest != digest:
            return None
        if call.finished is not None and time.monotonic() - call.finished > KEEP_FOR:
            return None
        return await asyncio.shield(call.answer)

    def start(self, context_id: str, digest: bytes) -> _Call:
        """Remember a call as the context's latest."""
        call = _Call(digest)
        self._calls.pop(context_id, None)
        self._calls[context_id] = call
        while len(self._calls) > MAX_CONTEXTS:
            _, oldest = self._calls.popitem(last=False)
            _settle(oldest, None)
        return call

    def finish(self, context_id: str, call: _Call, answer: Answer | None) -> None:
        """The call's outcome: its answer when it stored its turn, else None."""
        if answer is not None and len(answer.body) > MAX_ANSWER_BYTES:
            answer = None
        _settle(call, answer)
        call.finished = time.monotonic()
        if answer is None and self._calls.get(context_id) is call:
            del self._calls[context_id]  # nothing to give a retry


def _settle(call: _Call, answer: Answer | None) -> None:
    if not call.answer.done():
        call.answer.set_result(answer)


RETRIES = web.AppKey("retries", Retries)
