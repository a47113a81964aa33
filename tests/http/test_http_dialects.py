"""The core's hook for routes that speak another API (the proxy plugs in here):
errors on a dialect's paths come in its shape, with the same status and
headers, and its body limit applies there; every other path keeps Fastpaca's
shape and ``max_body_bytes``. Exercised with a made-up dialect, no proxy."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from http_reply import Reply
from http_support import Api, Serve

from fastpaca_core.http.errors import DIALECTS, Dialect, Dialects
from fastpaca_core.jsonutil import dumps, loads


def shape(status: int, code: str, message: str) -> bytes:
    return dumps({"problem": {"status": status, "code": code, "detail": message}})


async def serve_with_dialect(serve: Serve, **options: object) -> Api:
    api = await serve(**options)
    api.app[DIALECTS].add(r"/v1/ext(?:/.*)?", Dialect("ext", shape, max_body_bytes=8192))
    return api


async def call(api: Api, method: str, path: str, **kw: object) -> Reply:
    """Not through ``Api.request``: that one records errors for the JSON-shape test."""
    async with api.session.request(method, api.base + path, **kw) as resp:  # type: ignore[arg-type]
        return Reply(resp.status, dict(resp.headers), await resp.read())


def problem(reply: Reply, status: int, code: str) -> str:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["Content-Type"].startswith("application/json")
    body = loads(reply.body)
    assert set(body) == {"problem"} and body["problem"]["code"] == code, body
    assert body["problem"]["status"] == status
    detail: str = body["problem"]["detail"]
    return detail


async def test_errors_on_a_dialects_paths_take_its_shape(serve: Serve) -> None:
    api = await serve_with_dialect(serve, api_key="k", rate_limit=0.01, rate_burst=2)
    wrong = await call(api, "POST", "/v1/ext/call", headers={"Authorization": "Bearer no"})
    assert problem(wrong, 401, "unauthorized") == "Missing or invalid API key"
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    ours = await call(api, "GET", "/v1/contexts", headers={"Authorization": "Bearer no"})
    assert ours.status == 401
    assert loads(ours.body) == {"error": "unauthorized", "message": "Missing or invalid API key"}
    # a path that merely starts alike is not the dialect's
    near = await call(api, "GET", "/v1/extra", headers={"Authorization": "Bearer k"})
    assert near.status == 404 and loads(near.body)["error"] == "not_found"
    unknown = await call(api, "GET", "/v1/ext/nope", headers={"Authorization": "Bearer k"})
    assert problem(unknown, 404, "not_found") == "No such route"
    limited = await call(api, "GET", "/v1/ext/nope", headers={"Authorization": "Bearer k"})
    problem(limited, 429, "rate_limited")
    assert limited.headers["Retry-After"].isdigit()


async def test_a_dialects_body_limit_applies_on_its_paths_only(serve: Serve) -> None:
    api = await serve_with_dialect(serve, max_body_bytes=1024)
    # over max_body_bytes, within the dialect's 8192: read, then the router's 404
    within = await call(api, "POST", "/v1/ext/call", data=b"x" * 4000)
    problem(within, 404, "not_found")
    declared = await call(api, "POST", "/v1/ext/call", data=b"x" * 9000)
    assert problem(declared, 413, "payload_too_large") == "Request body exceeds 8192 bytes"

    async def chunks(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"x" * 1000

    chunked = await call(api, "POST", "/v1/ext/call", data=chunks(10))
    problem(chunked, 413, "payload_too_large")
    problem(await call(api, "POST", "/v1/ext/call", data=chunks(4)), 404, "not_found")
    # REST paths: max_body_bytes, though the app's client_max_size is the larger limit
    rest = await call(api, "PUT", "/v1/contexts/c", data=chunks(4))
    assert rest.status == 413
    assert loads(rest.body) == {
        "error": "payload_too_large",
        "message": "Request body exceeds 1024 bytes",
    }
    # a compressed body is held to the limit once decompressed
    packed = gzip.compress(b'{"metadata": {"pad": "' + b"x" * 5000 + b'"}}')
    assert len(packed) < 1024
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    rest = await call(api, "PUT", "/v1/contexts/c", data=packed, headers=headers)
    assert rest.status == 413 and loads(rest.body)["error"] == "payload_too_large"
    assert api.app._client_max_size >= 32 * 1024 * 1024  # proxy_max_body_bytes' default


def test_the_core_does_not_import_the_proxy() -> None:
    code = (
        "import sys, fastpaca_core.http, fastpaca_core.cli; "
        "assert 'fastpaca_proxy' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_first_pattern_added_that_matches_the_whole_path_wins() -> None:
    first, second = Dialect("first", shape), Dialect("second", shape)
    dialects = Dialects()
    assert dialects.of("/v1/a") is None  # none added
    dialects.add(r"/v1/a(?:/.*)?", first)
    dialects.add(r"/v1/(?P<name>[^/]+)", second)  # overlaps the first on /v1/a
    assert dialects.of("/v1/a") is first
    assert dialects.of("/v1/a/b") is first
    assert dialects.of("/v1/b") is second
    assert dialects.of("/v1/b/c") is None  # only a prefix of it matches
    assert dialects.of("/v2/a") is None


def test_patterns_with_groups_or_flags_of_their_own_still_match() -> None:
    """They cannot be branches of one alternation (names clash, \\1 would point
    elsewhere, inline flags must lead): they are matched one by one."""
    first, second = Dialect("first", shape), Dialect("second", shape)
    for later in (r"/b/(?P<id>[^/]+)", r"/b/([^/]+)/\1", r"(?i)/B/x/x", r"/b/(?P<d0>x)/x"):
        dialects = Dialects()
        dialects.add(r"/a/(?P<id>[^/]+)", first)
        dialects.add(later, second)
        assert dialects.of("/a/1") is first, later
        path = "/b/x" if later.endswith("+)") else "/b/x/x"
        assert dialects.of(path) is second, later
    dialects = Dialects()
    dialects.add(r"/a", first)
    with pytest.raises(re.error):
        dialects.add(r"/b/(", second)
    dialects.add(r"/c", second)  # a refused pattern leaves nothing behind
    assert dialects.of("/c") is second and dialects.of("/a") is first
