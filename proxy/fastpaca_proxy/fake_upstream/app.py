"""The aiohttp application: routes, recording, JSON and SSE answers.

Routes: ``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/messages``,
``POST /v1/messages/count_tokens``, ``POST /v1/responses/input_tokens``,
``POST /v1/embeddings``, ``GET /v1/models``, ``GET /v1/models/{id}``;
anything else is a 404 in OpenAI's shape (Anthropic's when the request carries
``anthropic-version``). Every request is recorded, whatever the answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import anthropic, openai_chat, openai_responses
from .checks import check_access, validate
from .errors import Family, error_body
from .recording import RecordedRequest
from .script import ErrorReply, Event, Protocol, Turn, resolve

if TYPE_CHECKING:
    from .server import FakeUpstream

FAKE: web.AppKey[FakeUpstream] = web.AppKey("fake_upstream")

_MODEL_CREATED = 1_700_000_000
EMBEDDING_SIZE = 8  # floats per fake embedding


def create_app(fake: FakeUpstream | None = None) -> web.Application:
    """The aiohttp application serving ``fake`` (a new one when omitted)."""
    if fake is None:
        from .server import FakeUpstream

        fake = FakeUpstream()
    app = web.Application(client_max_size=64 * 1024**2)
    app[FAKE] = fake
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/responses", _responses)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_post("/v1/messages/count_tokens", _count_tokens)
    app.router.add_post("/v1/responses/input_tokens", _input_tokens)
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_get("/v1/models", _models)
    # [\s\S]: any character, newlines too (a decoded %0A), so every path is answered
    app.router.add_get("/v1/models/{model_id:[\\s\\S]+}", _model)
    app.router.add_route("*", "/{tail:[\\s\\S]*}", _not_found)
    return app


def _access(fake: FakeUpstream, family: Family, recorded: RecordedRequest) -> ErrorReply | None:
    return check_access(
        recorded,
        family,
        api_key=fake.api_key,
        require_anthropic_version=fake.require_anthropic_version,
    )


async def _record(request: web.Request, protocol: Protocol | None) -> RecordedRequest:
    raw = await request.read()
    body: Any = None
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    recorded = RecordedRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers=headers,
        body=body,
        raw_body=raw,
        protocol=protocol,
    )
    request.app[FAKE].record(recorded)
    return recorded


def _family(protocol: Protocol | None, recorded: RecordedRequest) -> Family:
    if protocol == "anthropic" or (protocol is None and "anthropic-version" in recorded.headers):
        return "anthropic"
    return "openai"


def _base_headers(fake: FakeUpstream, family: Family) -> dict[str, str]:
    request_id = fake.new_id("req_")
    if family == "anthropic":
        return {"request-id": request_id}
    return {"x-request-id": request_id, "openai-processing-ms": "1", "openai-version": "2020-10-01"}


def _error(
    fake: FakeUpstream, family: Family, recorded: RecordedRequest, err: ErrorReply
) -> web.Response:
    headers = _base_headers(fake, family)
    request_id = headers.get("request-id") or headers["x-request-id"]
    if err.retry_after is not None:
        seconds = err.retry_after
        headers["retry-after"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
    headers.update(err.headers)
    recorded.status = err.status
    body = error_body(family, err, request_id)
    if isinstance(body, str | bytes):
        return web.Response(status=err.status, body=body, headers=headers)
    return web.json_response(body, status=err.status, headers=headers)


def _render_json(turn: Turn) -> dict[str, Any]:
    if turn.protocol == "openai_chat":
        return openai_chat.completion(turn)
    if turn.protocol == "openai_responses":
        return openai_responses.response(turn)
    return anthropic.message(turn)


def _render_stream(turn: Turn, body: dict[str, Any]) -> Iterator[Event]:
    if turn.protocol == "openai_chat":
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return openai_chat.stream(turn, include_usage)
    if turn.protocol == "openai_responses":
        return openai_responses.stream(turn)
    return anthropic.stream(turn)


def _stream_error(protocol: Protocol, err: ErrorReply, sent: int) -> Iterator[Event]:
    if protocol == "openai_chat":
        return openai_chat.stream_error(err, sent)
    if protocol == "openai_responses":
        return openai_responses.stream_error(err, sent)
    return anthropic.stream_error(err, sent)


def _encode(event: Event) -> bytes:
    data = event.data if isinstance(event.data, str) else json.dumps(event.data)
    head = f"event: {event.event}\n" if event.event is not None else ""
    return f"{head}data: {data}\n\n".encode()


def _drop(request: web.Request) -> None:
    """Cut the connection without finishing the response.

    Callers then raise ``CancelledError`` so aiohttp abandons the handler
    quietly instead of trying to finish a response on a dead transport.
    """
    transport = request.transport
    if transport is not None:
        transport.abort()


async def _generate(request: web.Request, protocol: Protocol) -> web.StreamResponse:
    fake = request.app[FAKE]
    recorded = await _record(request, protocol)
    family: Family = "anthropic" if protocol == "anthropic" else "openai"
    problem = _access(fake, family, recorded) or validate(protocol, recorded.body)
    if problem is not None:
        return _error(fake, family, recorded, problem)
    reply = fake.take(protocol)
    recorded.reply = reply
    if reply.latency > 0:
        await asyncio.sleep(reply.latency)
    if reply.error is not None:
        return _error(fake, family, recorded, reply.error)
    body: dict[str, Any] = recorded.body
    turn = resolve(
        reply,
        protocol=protocol,
        body=body,
        prompt_tokens=fake.prompt_tokens(recorded),
        new_id=fake.new_id,
        created=int(time.time()),
        echo_prefix=fake.echo_prefix,
    )
    recorded.turn = turn
    if body.get("stream") is not True:
        if reply.fail_after is not None:
            if reply.fail_with is not None:
                return _error(fake, family, recorded, reply.fail_with)
            _drop(request)
            raise asyncio.CancelledError
        return web.json_response(_render_json(turn), headers=_base_headers(fake, family))
    headers = _base_headers(fake, family)
    headers.update(
        {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(request)
    sent = deltas = 0
    try:
        for event in _render_stream(turn, body):
            if event.delta:
                if reply.fail_after is not None and deltas >= reply.fail_after:
                    if reply.fail_with is None:
                        _drop(request)
                        raise asyncio.CancelledError
                    for failure in _stream_error(protocol, reply.fail_with, sent):
                        await response.write(_encode(failure))
                    break
                if reply.delay > 0:
                    await asyncio.sleep(reply.delay)
                deltas += 1
            await response.write(_encode(event))
            sent += 1
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away; nothing left to say
    return response


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "openai_chat")


async def _responses(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "openai_responses")


async def _messages(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "anthropic")


async def _count_tokens(request: web.Request) -> web.Response:
    return await _count(request, "anthropic", {})


async def _input_tokens(request: web.Request) -> web.Response:
    return await _count(request, "openai_responses", {"object": "response.input_tokens"})


async def _count(request: web.Request, protocol: Protocol, shape: dict[str, Any]) -> web.Response:
    """A token count: the prompt tokens the request would be reported with."""
    fake = request.app[FAKE]
    family: Family = "anthropic" if protocol == "anthropic" else "openai"
    recorded = await _record(request, None)
    problem = _access(fake, family, recorded)
    if problem is None and not isinstance(recorded.body, dict):
        problem = ErrorReply(400, "Request body must be a JSON object")
    if problem is not None:
        return _error(fake, family, recorded, problem)
    recorded.protocol = protocol
    tokens = fake.prompt_tokens(recorded)
    recorded.protocol = None
    body = {**shape, "input_tokens": tokens}
    return web.json_response(body, headers=_base_headers(fake, family))


async def _embeddings(request: web.Request) -> web.Response:
    """One vector of ``EMBEDDING_SIZE`` per input, from the input's text:
    the same text, the same vector. ``encoding_format`` float or base64."""
    fake = request.app[FAKE]
    recorded = await _record(request, None)
    problem = _access(fake, "openai", recorded)
    body = recorded.body
    given = body.get("input") if isinstance(body, dict) else None
    inputs = [given] if isinstance(given, str) else given
    if problem is None and (
        not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs)
    ):
        problem = ErrorReply(400, "'input' must be a string or a non-empty list of strings")
    if problem is not None:
        return _error(fake, "openai", recorded, problem)
    assert isinstance(body, dict) and isinstance(inputs, list)
    data = []
    for index, text in enumerate(inputs):
        digest = hashlib.sha256(text.encode()).digest()
        vector = [(byte - 127.5) / 127.5 for byte in digest[:EMBEDDING_SIZE]]
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(len(text.split()) for text in inputs)
    reply = {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return web.json_response(reply, headers=_base_headers(fake, "openai"))


def _model_object(family: Family, model_id: str) -> dict[str, Any]:
    if family == "anthropic":
        return {
            "type": "model",
            "id": model_id,
            "display_name": model_id,
            "created_at": "2025-01-01T00:00:00Z",
        }
    owner = "anthropic" if model_id.startswith("claude") else "system"
    return {"id": model_id, "object": "model", "created": _MODEL_CREATED, "owned_by": owner}


async def _models(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    recorded = await _record(request, None)
    family = _family(None, recorded)
    problem = _access(fake, family, recorded)
    if problem is not None:
        return _error(fake, family, recorded, problem)
    data = [_model_object(family, m) for m in fake.models]
    if family == "anthropic":
        body: dict[str, Any] = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    else:
        body = {"object": "list", "data": data}
    return web.json_response(body, headers=_base_headers(fake, family))


async def _model(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    recorded = await _record(request, None)
    family = _family(None, recorded)
    problem = _access(fake, family, recorded)
    model_id = request.match_info["model_id"]
    if problem is None and model_id not in fake.models:
        if family == "anthropic":
            problem = ErrorReply(404, f"model: {model_id}")
        else:
            problem = ErrorReply(
                404,
                f"The model '{model_id}' does not exist or you do not have access to it.",
                code="model_not_found",
            )
    if problem is not None:
        return _error(fake, family, recorded, problem)
    return web.json_response(_model_object(family, model_id), headers=_base_headers(fake, family))


async def _not_found(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    recorded = await _record(request, None)
    family = _family(None, recorded)
    if family == "anthropic":
        err = ErrorReply(404, "Not Found")
    else:
        err = ErrorReply(404, f"Invalid URL ({request.method} {request.path})")
    return _error(fake, family, recorded, err)
