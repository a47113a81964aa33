"""The REST client facing answers that are not the Fastpaca API's: a redirect
(an http-to-https load balancer, a base URL missing its prefix), an HTML page
(the wrong port), JSON of another shape. Each is a clear ``ApiError``, never a
``TypeError`` from deep in the parsing, and never a silent success."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from loopback import serve_app

from fastpaca_core.client import ApiError, AsyncClient, Client, RateLimited, ValidationError

from .conftest import LoopThread
from .helpers import done, text

AnyClient = Client | AsyncClient


async def _redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("https://elsewhere.invalid" + request.path)


async def _html(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html><body>It works!</body></html>", content_type="text/html")


async def _other_json(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True, "messages": "none"})


@pytest.fixture
def foreign() -> Iterator[str]:
    """A real HTTP server that is not Fastpaca (``/redirect``, ``/html``, ``/json``),
    on its own loop thread so that the blocking client can reach it too."""
    app = web.Application()
    app.router.add_route("*", "/redirect/{tail:.*}", _redirect)
    app.router.add_route("*", "/html/{tail:.*}", _html)
    app.router.add_route("*", "/json/{tail:.*}", _other_json)
    thread = LoopThread()
    runner, port = thread.run(serve_app(app))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        thread.run(runner.cleanup())
        thread.stop()


def _calls(client: AnyClient) -> list[tuple[str, Callable[[], Any]]]:
    if isinstance(client, Client):
        ctx = client.context("c1")
        return [
            ("get", lambda: client.get_context("c1")),
            ("delete", lambda: client.delete_context("c1")),
            ("append", lambda: ctx.append(text("user", "hi"))),
            ("tail", lambda: ctx.tail()),
            ("list", lambda: client.list_contexts()),
        ]

    async def handle() -> Any:
        return await client.context("c1")

    return [
        ("get", lambda: client.get_context("c1")),
        ("delete", lambda: client.delete_context("c1")),
        ("append", lambda: _then(handle(), lambda h: h.append(text("user", "hi")))),
        ("tail", lambda: _then(handle(), lambda h: h.tail())),
        ("list", lambda: client.list_contexts()),
    ]


async def _then(first: Any, then: Callable[[Any], Any]) -> Any:
    return await then(await first)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("where", "status", "code"),
    [
        ("redirect", 308, "unexpected_redirect"),
        ("html", 200, "unexpected_response"),
        ("json", 200, "unexpected_response"),
    ],
)
async def test_an_answer_that_is_not_the_api_is_a_clear_error(
    foreign: str, kind: str, where: str, status: int, code: str
) -> None:
    base = f"{foreign}/{where}"
    client: AnyClient = (
        Client(base, max_retries=0) if kind == "sync" else AsyncClient(base, max_retries=0)
    )
    try:
        for name, call in _calls(client):
            if where == "json" and name == "delete":
                continue  # a 2xx to a DELETE needs no body
            with pytest.raises(ApiError) as caught:
                await done(call())
            exc = caught.value
            assert (exc.status, exc.code) == (status, code), name
            assert "/v1/contexts" in str(exc), str(exc)  # which request got it
            if where == "redirect":
                assert "https://elsewhere.invalid" in str(exc)
    finally:
        if isinstance(client, Client):
            client.close()
        else:
            await client.aclose()


@pytest.mark.parametrize("base", ["127.0.0.1:4000", "localhost:4000", "ftp://127.0.0.1:4000"])
def test_a_base_url_without_http_scheme_is_refused_at_once(base: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Client(base)
    assert caught.value.field == "base_url"
    with pytest.raises(ValidationError):
        AsyncClient(base)


HITS = web.AppKey("hits", list[str])


async def _busy(request: web.Request) -> web.StreamResponse:
    request.app[HITS].append(request.path)
    body = {"error": "rate_limited", "message": "Too many requests"}
    return web.json_response(body, status=429, headers={"Retry-After": "3600"})


def test_a_retry_after_of_an_hour_is_raised_not_slept() -> None:
    """A server (or a load balancer in front of it) asking for an hour's pause:
    the client does not block for that hour; it raises at once, the wait in
    ``retry_after``, as the OpenAI SDK does past two minutes."""
    app = web.Application()
    app[HITS] = []
    app.router.add_route("*", "/{tail:.*}", _busy)
    thread = LoopThread()
    runner, port = thread.run(serve_app(app))
    try:
        with Client(f"http://127.0.0.1:{port}", max_retries=3) as client:
            started = time.monotonic()
            with pytest.raises(RateLimited) as caught:
                client.get_context("c1")
            assert time.monotonic() - started < 5
        assert caught.value.retry_after == 3600.0 and caught.value.code == "rate_limited"
        assert app[HITS] == ["/v1/contexts/c1"]  # asked once, not retried
    finally:
        thread.run(runner.cleanup())
        thread.stop()


@pytest.mark.parametrize("key", ["k1\n", "k1\r\n", "kä", "k\x001"])
def test_an_api_key_that_cannot_be_a_header_is_refused_at_once(key: str) -> None:
    """A key read from a file keeps its newline: httpx would refuse the header
    only when sending, as a "connection" error retried until it gives up."""
    with pytest.raises(ValidationError) as caught:
        Client("http://127.0.0.1:4000", api_key=key)
    assert caught.value.field == "api_key"
    assert key not in str(caught.value)  # a key is never echoed
    with pytest.raises(ValidationError):
        AsyncClient("http://127.0.0.1:4000", api_key=key)


@pytest.mark.parametrize(
    "metadata", [{"tags": {"a", "b"}}, {1: "a key JSON cannot have"}, {"n": 2**70}]
)
def test_a_body_json_cannot_carry_is_a_validation_error_before_sending(
    foreign: str, metadata: dict[Any, Any]
) -> None:
    """A set, a non-string key, an integer past 64 bits: refused as
    ``ValidationError`` (a ``FastpacaError`` like every client error), not as
    orjson's ``TypeError``, and nothing is sent."""
    with Client(f"{foreign}/html", max_retries=0) as client:
        ctx = client.context("c1")
        with pytest.raises(ValidationError) as caught:
            ctx.append({"role": "user", "parts": [], "metadata": metadata})
        assert caught.value.field == "body"
        with pytest.raises(ValidationError):
            ctx.update_metadata(metadata)
