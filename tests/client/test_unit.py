"""The client's request building, error mapping and retries, against httpx.MockTransport.

Everything here is about what goes on the wire and how answers are read; the
behaviour against the real server is in the other modules of this package.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from fastpaca_core.client import (
    ApiError,
    AsyncClient,
    Client,
    ConflictError,
    ConnectionFailed,
    ContextNotFound,
    ContextTombstoned,
    FastpacaError,
    IdempotencyKeyReused,
    PayloadTooLarge,
    RateLimited,
    StoreUnavailable,
    Unauthorized,
    ValidationError,
    VersionConflict,
)
from fastpaca_core.client._core import retry_after
from fastpaca_core.client._errors import error_from_response
from fastpaca_core.jsonutil import loads

CONTEXT = {
    "id": "c1",
    "token_budget": 8000,
    "trigger_ratio": 0.7,
    "policy": {"strategy": "last_n", "config": {"limit": 200}},
    "metadata": {},
    "status": "active",
    "version": 0,
    "last_seq": 0,
    "created_at": "2026-01-01T00:00:00.000000Z",
    "updated_at": "2026-01-01T00:00:00.000000Z",
}
APPENDED = {"seq": 1, "version": 1, "token_estimate": 3}
HELLO = {"role": "user", "parts": [{"type": "text", "text": "hi"}]}

Responder = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a script and keeps every request."""

    def __init__(self, *answers: httpx.Response | Exception | Responder) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    def bodies(self) -> list[Any]:
        return [loads(r.content) if r.content else None for r in self.requests]


def reply(status: int, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    return reply(status, {"error": code, "message": message}, **headers)


def client(recorder: Recorder, **options: Any) -> Client:
    options.setdefault("backoff", 0.001)
    return Client(transport=httpx.MockTransport(recorder), **options)


def test_context_without_options_sends_nothing() -> None:
    rec = Recorder(reply(200, CONTEXT))
    with client(rec) as fp:
        ctx = fp.context("c1")
    assert rec.requests == []
    assert ctx.id == "c1" and ctx.info is None


def test_context_options_are_omitted_when_absent_never_null() -> None:
    rec = Recorder(reply(200, CONTEXT))
    with client(rec) as fp:
        ctx = fp.context("c1", budget=500)
        fp.context("c1", trigger=0.5, policy={"strategy": "manual", "config": {}})
        fp.context("c1", metadata={"a": 1})
        fp.context("c1", create=True)
    assert [r.method for r in rec.requests] == ["PUT"] * 4
    assert str(rec.requests[0].url) == "http://127.0.0.1:4000/v1/contexts/c1"
    assert rec.bodies() == [
        {"token_budget": 500},
        {"trigger_ratio": 0.5, "policy": {"strategy": "manual", "config": {}}},
        {"metadata": {"a": 1}},
        {},
    ]
    assert ctx.info is not None and ctx.info.token_budget == 8000
    assert ctx.info.created_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_base_url_with_v1_and_api_key() -> None:
    rec = Recorder(reply(200, CONTEXT))
    with client(rec, api_key="s3cret") as fp:
        fp.get_context("a b/../x")
    with Client("http://example.test:9/v1/") as other:
        assert other.base_url == "http://example.test:9"
    request = rec.requests[0]
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.url.raw_path == b"/v1/contexts/a%20b%2F..%2Fx"


def test_append_body_and_automatic_idempotency_key() -> None:
    rec = Recorder(reply(201, APPENDED))
    with client(rec) as fp:
        ctx = fp.context("c1")
        result = ctx.append(HELLO)
        ctx.append(HELLO, if_version=0, token_count=7, idempotency_key="k-1")
    assert result.seq == 1 and result.version == 1 and result.token_estimate == 3
    first, second = rec.bodies()
    assert first == {"message": HELLO}
    assert second == {"message": {**HELLO, "token_count": 7}, "if_version": 0}
    keys = [r.headers["idempotency-key"] for r in rec.requests]
    assert keys[1] == "k-1" and len(keys[0]) == 36 and keys[0] != keys[1]


def test_query_parameters_only_when_given() -> None:
    window = {"version": 2, "messages": [], "used_tokens": 0, "needs_compaction": False}
    rec = Recorder(
        lambda r: reply(200, window if r.url.path.endswith("context") else {"messages": []})
    )
    with client(rec) as fp:
        ctx = fp.context("c1")
        ctx.context()
        ctx.context(budget_tokens=10, if_version=0, format="openai")
        ctx.tail()
        ctx.tail(offset=0, limit=5)
        ctx.messages(after_seq=3, limit=2)
    assert [r.url.query.decode() for r in rec.requests] == [
        "",
        "budget_tokens=10&if_version=0&format=openai",
        "",
        "offset=0&limit=5",
        "after_seq=3&limit=2",
    ]


@pytest.mark.parametrize(
    ("response", "kind", "attrs"),
    [
        (
            error(409, "conflict", "Context version changed (expected 41, found 42)"),
            VersionConflict,
            {"expected": 41, "found": 42, "status": 409, "code": "conflict"},
        ),
        (error(409, "conflict", "something else"), ConflictError, {"status": 409}),
        (
            error(409, "context_tombstoned", "gone"),
            ContextTombstoned,
            {"context_id": "c1", "code": "context_tombstoned"},
        ),
        (error(404, "context_not_found", "nope"), ContextNotFound, {"context_id": "c1"}),
        (error(404, "not_found", "No such route"), ApiError, {"status": 404, "code": "not_found"}),
        (
            error(400, "invalid_request", "message.role: is required"),
            ValidationError,
            {"field": "message.role", "reason": "is required"},
        ),
        (
            error(400, "invalid_json", "Request body is not valid JSON: x"),
            ValidationError,
            {"field": "", "code": "invalid_json"},
        ),
        (error(422, "idempotency_key_reused", "no"), IdempotencyKeyReused, {"key": "k"}),
        (error(401, "unauthorized", "key"), Unauthorized, {"status": 401}),
        (error(413, "payload_too_large", "big"), PayloadTooLarge, {"status": 413}),
        (error(418, "teapot", "short and stout"), ApiError, {"code": "teapot"}),
        (httpx.Response(500, text="<html>"), ApiError, {"code": "http_500", "status": 500}),
    ],
)
def test_error_responses_become_typed_exceptions(
    response: httpx.Response, kind: type[FastpacaError], attrs: dict[str, Any]
) -> None:
    rec = Recorder(response)
    with client(rec) as fp, pytest.raises(kind) as caught:
        fp.context("c1").append(HELLO, idempotency_key="k")
    assert type(caught.value) is kind
    for name, value in attrs.items():
        assert getattr(caught.value, name) == value
    assert len(rec.requests) == 1  # none of these is retried
    body = response.json() if response.headers.get("content-type") == "application/json" else {}
    assert str(caught.value) == body.get("message", "HTTP 500")


def test_503_is_retried_with_the_same_idempotency_key() -> None:
    rec = Recorder(
        error(503, "store_unavailable", "busy"),
        httpx.ConnectError("refused"),
        reply(201, APPENDED),
    )
    with client(rec) as fp:
        assert fp.context("c1").append(HELLO).seq == 1
    keys = {r.headers["idempotency-key"] for r in rec.requests}
    assert len(rec.requests) == 3 and len(keys) == 1


def test_retries_give_up_with_the_last_error() -> None:
    rec = Recorder(error(503, "store_unavailable", "busy"))
    with client(rec, max_retries=2) as fp, pytest.raises(StoreUnavailable):
        fp.get_context("c1")
    assert len(rec.requests) == 3

    rec = Recorder(httpx.ReadError("reset"))
    with client(rec, max_retries=1) as fp, pytest.raises(ConnectionFailed) as caught:
        fp.get_context("c1")
    assert isinstance(caught.value.__cause__, httpx.ReadError)
    assert len(rec.requests) == 2


def test_429_honours_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("fastpaca_core.client._sync.time.sleep", slept.append)
    rec = Recorder(
        error(429, "rate_limited", "slow down", **{"retry-after": "2"}),
        error(429, "rate_limited", "slow down", **{"retry-after": "2"}),
        reply(200, CONTEXT),
    )
    with client(rec, max_retries=1) as fp, pytest.raises(RateLimited) as caught:
        fp.get_context("c1")
    assert slept == [2.0] and caught.value.retry_after == 2.0


def test_backoff_grows_and_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("fastpaca_core.client._sync.time.sleep", slept.append)
    rec = Recorder(error(502, "bad_gateway", "upstream"))
    with client(rec, max_retries=5, backoff=1.0, max_backoff=4.0) as fp, pytest.raises(ApiError):
        fp.list_contexts()
    bounds = [(0.5, 1), (1, 2), (2, 4), (2, 4), (2, 4)]
    assert len(slept) == 5
    assert all(lo <= s <= hi for s, (lo, hi) in zip(slept, bounds, strict=True))


def test_retry_after_forms() -> None:
    def parse(value: str) -> float | None:
        return retry_after(httpx.Response(503, headers={"retry-after": value}))

    assert parse("3") == 3.0
    assert parse("-1") == 0.0
    assert parse("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (parse(later) or 0) <= 30
    assert retry_after(httpx.Response(503)) is None


def test_error_without_body_code() -> None:
    exc = error_from_response(503, None)
    assert isinstance(exc, StoreUnavailable) and exc.status == 503


def test_list_pages_and_iteration() -> None:
    pages = {
        None: {"contexts": [CONTEXT, {**CONTEXT, "id": "c2"}], "next_cursor": "p2"},
        "p2": {"contexts": [{**CONTEXT, "id": "c3"}], "next_cursor": None},
    }
    rec = Recorder(lambda r: reply(200, pages[r.url.params.get("cursor")]))
    with client(rec) as fp:
        assert [c.id for c in fp.iter_contexts(page_size=2)] == ["c1", "c2", "c3"]
    assert [r.url.query.decode() for r in rec.requests] == ["limit=2", "limit=2&cursor=p2"]


async def test_async_client_shares_the_same_logic() -> None:
    rec = Recorder(error(503, "store_unavailable", "busy"), reply(201, APPENDED))
    async with AsyncClient(transport=httpx.MockTransport(rec), backoff=0.001) as fp:
        ctx = await fp.context("c1")
        assert (await ctx.append(HELLO)).version == 1
    assert len({r.headers["idempotency-key"] for r in rec.requests}) == 1
    assert len(rec.requests) == 2
