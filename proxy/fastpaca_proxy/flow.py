"""One proxied call: align the request with the log, send the compacted context
upstream, pass the reply through, and store the turn once the call succeeded.

- No context id: pure pass-through; nothing is read or stored.
- With one: the request's system/developer messages are its preamble (sent,
  never logged; a Responses request that continues a ``previous_response_id``
  without any inherits its chain's, see ``preambles``); its other messages
  that the log does not hold yet are the new turn (see ``turns.align``). The
  upstream receives the preamble, the LLM context and the new turn, within
  the context's budget minus what the rest of the request (preamble, tools,
  parameters) takes.
- The new turn and the reply are appended together, atomically, once the
  upstream answered 2xx and, for streams, finished its stream. A failed call
  stores nothing, so the client's retry is clean. (The log side of this, the
  alignment read and the append, is in ``storing``.)
- Streams are passed through event by event as they arrive. A client that
  goes away mid-stream does not stop the reply: it is read to the end and
  stored, so the log holds what the model said (and was paid for).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from fastpaca_core.engine import Engine, Window
from fastpaca_core.errors import FastpacaError, ValidationError
from fastpaca_core.http import ENGINE
from fastpaca_core.http.tenants import public_id, public_text, scoped_id
from fastpaca_core.jsonutil import JSONError, check_json, dumps, dumps_str, loads
from fastpaca_core.model import (
    ContextRecord,
    Message,
    calibrated,
    uncalibrated,
    validate_context_id,
)
from fastpaca_core.tokens import reads_much
from fastpaca_core.toolcalls import tool_refs
from fastpaca_core.window import WindowItem

from .adapters import Adapter, Assembler
from .adapters.base import sendable
from .preambles import PREAMBLES, Preambles
from .relaying import (
    Relayed,
    finish_stream,
    hold_headers,
    is_sse,
    own_error,
    relay,
    request_body,
    timeout_error,
    unreachable_error,
)
from .retries import RETRIES, Answer, retry_key
from .sse import SSEEvent, SSEParser
from .storing import (
    Turn,
    align_with_log,
    count_later,
    count_turn,
    drop_count,
    lift_deadline,
    store_answered,
    store_turn,
)
from .upstream import UPSTREAM, Upstream

__all__ = ["proxy_call"]

log = logging.getLogger("fastpaca.proxy")

# on a non-streamed call's response that stored its turn: the headers it is sent
# with (as given: before ``prepare`` adds its own), for a retry's answer
_STORED = web.ResponseKey[dict[str, str]]("turn_stored")
# messages (input items) a proxied request may hold: each is converted and aligned
# with the log on the event loop (~20-45 us apiece), so more would stall the server
MAX_MESSAGES = 10_000


async def _prepare(
    engine: Engine,
    adapter: Adapter,
    context_id: str,
    body: Mapping[str, Any],
    *,
    defer_count: bool,
    create: bool = True,
    preambles: Preambles | None = None,
) -> Turn:
    """The turn to send. ``defer_count``: when the window keeps the whole new
    turn even at its largest possible size (``TokenCounter.at_most``), its
    exact count can wait until the request has gone out (see ``count_turn``).
    ``create``: a context that does not exist yet is created (a call), or
    read as the empty one it would be (a token count, which stores nothing).
    ``preambles``: a request without a preamble of its own that continues an
    earlier reply gets the one that reply was sent with."""
    validate_context_id(context_id, "context")
    chat = adapter.split(body)
    if not chat.messages:
        raise ValidationError(adapter.conversation_key, "holds no message besides the preamble")
    preamble = chat.preamble
    if preambles is not None and not preamble:
        preamble = preambles.inherited(context_id, adapter.continues(body))
    rest = {k: v for k, v in body.items() if k != adapter.conversation_key}

    def storable(messages: list[Message]) -> None:
        for message in messages:  # to be stored, and answered again later
            check_json([message.parts, message.metadata], adapter.conversation_key)

    def fresh() -> None:  # a new context: every message is new
        storable(chat.messages)
        dumps([rest, preamble])

    ctx, live, alignment = await align_with_log(
        engine, adapter, context_id, chat.messages, fresh if create else None
    )
    storable(alignment.new)
    # the same preamble, tools and parameters come every turn: cached by content
    ours_reserved = await engine.tokens.acount_text(dumps_str([rest, preamble]))
    reserved = calibrated(ours_reserved, ctx.calibration)  # budgets are in the provider's tokens
    budget = max(1, ctx.token_budget - reserved)
    bounds: list[int] = []
    fits = defer_count
    if defer_count:  # what the turn may take at most, measured only up to the room left
        room = uncalibrated(budget, ctx.calibration) - ctx.used_tokens_estimate
        for message in alignment.new:
            if reads_much(message):  # a big file: its bytes are read once, off the loop
                fits = False
                break
            bounds.append(engine.tokens.at_most(message, room - sum(bounds)))
            if sum(bounds) > room:  # (the last bound may be partial): count it
                fits = False
                break
        fits = fits and Engine.window_keeps_all(ctx, sum(bounds), budget)
    counted = not fits
    if counted:  # counted once: the window and the append use these counts as given
        counts = await engine.tokens.acount_fresh(alignment.new)
    else:
        counts = bounds  # the window cuts nothing either way: the same messages
    new = [m.with_tokens(c) for m, c in zip(alignment.new, counts, strict=True)]
    in_flight = _in_flight(new)

    async def window_with(pending: list[Message]) -> Window:
        return await engine.window(
            context_id,
            budget_tokens=budget,
            pending=pending,
            keep_pending=in_flight,
            rewind_to_seq=alignment.rewind_to_seq,
            snapshot=(ctx, live),
        )

    window = await window_with(new)
    if not counted and not _as_assumed(window.items, ctx, new):
        # a call read back from the log (or a result without one) changed the
        # window: its cut must not rest on the upper bounds
        counted = True
        counts = await engine.tokens.acount_fresh(alignment.new)
        new = [m.with_tokens(c) for m, c in zip(alignment.new, counts, strict=True)]
        window = await window_with(new)
    ours = window.used_tokens_estimate
    # (negative when older messages of the new turn were cut: base + the turn's
    # counts is still what was sent, as ``count_turn`` adds them up)
    base = (window.used_tokens if ours is None else ours) - sum(counts)
    messages = window.messages
    sent = sendable(messages)  # (calls the conversation went past left out)
    if sent is not messages:  # what is sent is what the calibration learns from
        base -= await _left_out(engine, messages, sent)
    return Turn(
        ctx,
        preamble,
        new if counted else alignment.new,
        alignment.rewind_to_seq,
        sent,
        window.used_tokens if counted else 0,
        base,
        ours_reserved,
        adapter,
        chat.messages,
        counted=counted,
    )


async def _left_out(engine: Engine, window: list[Message], sent: Sequence[Message]) -> int:
    """The tokens ``sendable`` took out of ``window``: the messages it dropped
    or rewrote, as counted in the window, less the rewrites' own counts."""
    ours, theirs = {id(m) for m in window}, {id(m) for m in sent}
    gone = sum(m.token_count or 0 for m in window if id(m) not in theirs)
    rewrites = [m for m in sent if id(m) not in ours]
    return gone - sum(await engine.tokens.acount_fresh(rewrites))


def _in_flight(new: list[Message]) -> int:
    """How many of the new turn's last messages are the turn in flight, sent
    whatever the budget: its last message and, when that holds tool results,
    the messages of results right before it (their calls come with them, in
    the window's cut or read back from the log). The turn's older messages
    (history the log did not hold: a client new to the proxy, an edited
    turn) are cut to the budget like the log's."""
    count = 0
    for message in reversed(new):
        results = tool_refs(message)[1]
        if count and not results:
            break
        count += 1
        if not results:
            break
    return count


def _as_assumed(items: list[WindowItem], ctx: ContextRecord, new: list[Message]) -> bool:
    """Whether a window built with the new turn's upper-bound counts is the
    one ``Engine.window_keeps_all`` promised: the turn whole and unchanged at
    its end, and no log row read back before the live ones."""
    size = len(new)
    if len(items) < size:
        return False
    for index, (item, message) in enumerate(zip(items[len(items) - size :], new, strict=True)):
        if item.in_log or item.from_seq != ctx.last_seq + index + 1:
            return False
        if item.message.parts is not message.parts:  # rewritten
            return False
    first_row = next((item for item in items if item.is_row), None)
    return first_row is None or first_row.from_seq >= ctx.live_from_seq


def _headers(
    request: web.Request, context_id: str, version: int, used_tokens: int
) -> dict[str, str]:
    return {
        "X-Fastpaca-Context": public_id(request, context_id),
        "X-Fastpaca-Version": str(version),
        "X-Fastpaca-Used-Tokens": str(used_tokens),
    }


async def proxy_call(
    request: web.Request, adapter: Adapter, context_id: str | None
) -> web.StreamResponse:
    raw, body = await _read_json(request, adapter)
    if body is None:
        return own_error(adapter, 400, "invalid_request", "The request body must be a JSON object")
    upstream = request.app[UPSTREAM]
    if context_id is None or adapter.passes_through(body):
        return await _pass_through(request, upstream, adapter, raw, adapter.is_stream(body))
    engine = request.app[ENGINE]
    retries = request.app[RETRIES]
    preambles = request.app[PREAMBLES] if adapter.chains else None
    call = None  # this call as the context's latest (retries.py); non-streamed only
    try:
        try:
            context_id = _scoped(request, adapter, context_id, body)
            # a stream's headers, sent with its first event, carry the window's tokens:
            # its turn is counted before it is sent
            stream = adapter.is_stream(body)
            if not stream:  # a retry of a call under way or undelivered gets its answer
                request_key, is_retry, keyed = retry_key(request.headers, raw)
                if not is_retry:
                    call = retries.start(context_id, request_key, keyed)
                else:
                    claimed = await retries.claim(context_id, request_key, True, keyed)
                    if isinstance(claimed, Answer):
                        return claimed.response()
                    call = claimed
            turn = await _prepare(
                engine, adapter, context_id, body, defer_count=not stream, preambles=preambles
            )
            upstream_body = adapter.build(body, turn.preamble, turn.window)
            plain = upstream_body.copy()  # before ``prepare_stream`` adds to it
            model = str(body.get("model"))  # an upstream may refuse stream usage for one model
            asks = model not in upstream.refuses_usage
            hide = stream and asks and adapter.prepare_stream(upstream_body)
            payload = dumps(upstream_body)
        except FastpacaError as exc:
            return own_error(adapter, exc.status, exc.code, public_text(request, str(exc)))
        headers = upstream.request_headers(adapter.provider, request.headers)
        headers["Content-Type"] = "application/json"
        url = upstream.target(adapter.provider, adapter.path)
        unasked = (lambda: dumps(plain)) if hide else None
        response = await _forward(
            request, engine, adapter, context_id, turn, url, payload, headers, stream, unasked
        )
        headers_sent = response.get(_STORED)
        if call is not None and headers_sent is not None and isinstance(response, web.Response):
            body_bytes = response.body if isinstance(response.body, bytes) else b""
            delivered = await _deliver(request, response)
            answer = None
            if call.wants_answer(delivered):
                answer = Answer(response.status, body_bytes, headers_sent)
            retries.finish(context_id, call, answer, delivered=delivered)
            call = None
        return response
    finally:
        if call is not None:  # refused, failed or stored nothing: a retry goes upstream
            retries.finish(context_id, call, None)


async def _read_json(request: web.Request, adapter: Adapter) -> tuple[bytes, dict[str, Any] | None]:
    """The request's body, and the JSON object it holds (None when it holds none)."""
    raw = await request.read()
    try:
        body = loads(raw) if raw else None
    except JSONError:
        body = None
    return raw, body if isinstance(body, dict) else None


def _scoped(request: web.Request, adapter: Adapter, context_id: str, body: dict[str, Any]) -> str:
    """The caller's tenant's own context id, once the request is within bounds."""
    context_id = scoped_id(request, context_id, "context")
    conversation = body.get(adapter.conversation_key)
    if isinstance(conversation, list) and len(conversation) > MAX_MESSAGES:
        too_many = f"holds more than {MAX_MESSAGES:,} messages"
        raise ValidationError(adapter.conversation_key, too_many)
    return context_id


async def _deliver(request: web.Request, response: web.StreamResponse) -> bool:
    """Send ``response`` now; False when its client is gone (it gave up waiting:
    its retry is to get this answer, see retries.py)."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        return False
    return True


async def _forward(
    request: web.Request,
    engine: Engine,
    adapter: Adapter,
    context_id: str,
    turn: Turn,
    url: URL,
    payload: bytes,
    headers: dict[str, str],
    stream: bool,
    unasked: Callable[[], bytes] | None,
) -> web.StreamResponse:
    """Send the turn upstream and answer the client. ``unasked``: the payload
    without what ``prepare_stream`` added (a stream's usage), for an upstream
    that refuses ``stream_options`` (an OpenAI-compatible server, an older
    Azure API version): it is asked again without, once, and when that
    streams, later streams for the same model are sent as asked (their
    replies counted by the server instead). A reply's id is remembered with
    the turn's preamble, for a request that continues it (``preambles``)."""
    upstream = request.app[UPSTREAM]
    preambles = request.app[PREAMBLES] if adapter.chains else None
    counting = count_later(engine, turn)
    retried = False
    try:
        while True:
            async with upstream.session.post(
                url, data=request_body(payload), headers=headers, allow_redirects=False
            ) as resp:
                if stream and resp.status < 300 and is_sse(resp):
                    if retried:
                        upstream.refuses_usage.add(str(loads(payload).get("model")))
                    hide = unasked is not None
                    return await _relay_stream(
                        request, engine, adapter, context_id, turn, resp, hide, preambles
                    )
                lift_deadline(request)  # an answer is coming: it is stored whatever the time
                data = await resp.read()
            if unasked is None or not _refuses_usage(resp.status, data):
                break
            payload, unasked, retried = unasked(), None, True
    except TimeoutError as exc:
        drop_count(counting)
        return timeout_error(request, adapter, exc)
    except aiohttp.ClientError as exc:
        drop_count(counting)
        return unreachable_error(adapter, exc)
    except BaseException:
        drop_count(counting)
        raise
    version, used, stored = turn.ctx.version, None, False
    if 200 <= resp.status < 300:
        try:
            answer = loads(data)
            reply, usage = adapter.reply(answer)
        except (JSONError, FastpacaError, TypeError, ValueError, KeyError):
            log.warning("unreadable upstream reply", extra={"fields": {"context_id": context_id}})
        else:
            if preambles is not None:
                preambles.remember(context_id, adapter.reply_id(answer), turn.preamble)
            version, used, stored = await store_answered(
                request, engine, context_id, turn, reply, usage, counting
            )
    if used is None:  # no store tried: the window as sent
        _, used, _ = await count_turn(engine, turn, counting)
    out_headers = upstream.response_headers(resp.headers)
    out_headers.update(_headers(request, context_id, version, used))
    out = web.Response(status=resp.status, body=data, headers=out_headers)
    if stored:  # a retry gets this answer (``out_headers`` is not changed again)
        out[_STORED] = out_headers
    return out


def _refuses_usage(status: int, data: bytes) -> bool:
    """Whether an upstream's answer refuses the ``stream_options`` the proxy added."""
    return status in (400, 422) and b"stream_options" in data


async def _relay_stream(
    request: web.Request,
    engine: Engine,
    adapter: Adapter,
    context_id: str,
    turn: Turn,
    resp: aiohttp.ClientResponse,
    hide: bool,
    preambles: Preambles | None,
) -> web.StreamResponse:
    upstream = request.app[UPSTREAM]
    out_headers = upstream.response_headers(resp.headers)
    out_headers.update(_headers(request, context_id, turn.ctx.version, turn.used_tokens))
    parser = SSEParser()
    assembler = adapter.assembler()
    client_gone = dropped = stored = False
    out = Relayed(status=resp.status, headers=out_headers)
    await out.prepare(request)
    headers_out = hold_headers(out)
    try:
        async for chunk in resp.content.iter_any():
            for event in parser.feed(chunk):
                _feed(assembler, event, context_id)
                if preambles is not None and assembler.reply_id is not None:
                    # its id reaches the client with this event: a request may name it next
                    preambles.remember(context_id, assembler.reply_id, turn.preamble)
                    preambles = None
                if assembler.complete and not (stored or assembler.failed):
                    # stored (written; its COMMIT may follow) before the final event
                    # reaches the client: a client that reads the log right after the
                    # stream finds the turn
                    stored = True
                    reply, usage = assembler.reply()
                    await asyncio.shield(store_turn(engine, context_id, turn, reply, usage))
                if client_gone or (hide and adapter.hide(event)):
                    continue
                try:
                    await out.write(event.raw)
                except ConnectionError:
                    client_gone = True  # keep reading: the reply is still stored
        rest = parser.rest()
        if rest and not client_gone:
            await out.write(rest)
    except (TimeoutError, aiohttp.ClientError):
        dropped = True  # the upstream broke off: store nothing
    except ConnectionError:
        client_gone = True
    finally:
        headers_out.cancel()
    assembler.end()
    if assembler.complete and not (stored or assembler.failed or dropped):
        reply, usage = assembler.reply()
        await asyncio.shield(store_turn(engine, context_id, turn, reply, usage))
    await finish_stream(request, out, dropped, client_gone)
    return out


def _feed(assembler: Assembler, event: SSEEvent, context_id: str) -> None:
    """Hand ``event`` to the assembler. One it cannot read (an upstream's odd
    shape: ``"choices": [null]``) fails the turn, which is then not stored
    (rather than stored without what that event held); the client's stream
    goes on as the upstream sends it."""
    if assembler.failed:
        return
    try:
        assembler.feed(event)
    except Exception:  # noqa: BLE001 - the relay must not break on what it only records
        assembler.failed = True
        log.warning(
            "unreadable upstream stream event: the turn is not stored",
            extra={"fields": {"context_id": context_id, "event": event.event}},
        )


async def _pass_through(
    request: web.Request, upstream: Upstream, adapter: Adapter, raw: bytes, stream: bool
) -> web.StreamResponse:
    """No context: forward the request as it came, and the answer as it comes."""
    headers = upstream.request_headers(adapter.provider, request.headers)
    headers["Content-Type"] = "application/json"
    url = upstream.target(adapter.provider, adapter.path)
    return await relay(request, upstream, "POST", url, headers, raw, adapter)
