"""Bad input of every kind, over raw sockets: always 4xx, never 5xx, nothing stored.

One stack (the canonical API with its proxy, on SQLite, an API key configured,
and the fake upstream) serves the whole battery; a context ``keep`` with a few
messages, metadata and a compaction is created first. Each case is sent as
raw bytes over a fresh loopback connection (so invalid UTF-8, NUL bytes and
absurd lengths reach the server exactly as written) and must answer 4xx:

- ``api``: the canonical error shape ``{"error": code, "message": text}``;
- ``openai`` / ``anthropic``: a proxy route's error, in that provider's shape;
- ``parser``: not valid HTTP/1.1 at all (bytes outside the URL grammar, NUL
  in a header, a 64 KB header line, an unknown method token): aiohttp's HTTP
  parser refuses it before routing with a plain-text 400 (docs/http-api.md).

After every case the stored data is byte-identical to what it was (the
context, its tail, log, window and the list of contexts) and the fake
upstream has received nothing: no malformed proxy request reaches it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from proxy.support import Stack, run_stack

from fastpaca_core.jsonutil import INPUT_DEPTH, MAX_DEPTH, loads

KEY = "bad-input-key"
AUTH = f"Authorization: Bearer {KEY}".encode()
DEEP = 10_000


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    kind: str  # api | openai | anthropic | parser
    status: int | None = None  # when one status is required


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def request(
    method: str | bytes,
    target: str | bytes,
    body: bytes | None = None,
    headers: tuple[bytes, ...] = (),
    content_type: bytes | None = b"application/json",
    auth: bool = True,
) -> bytes:
    method = method.encode() if isinstance(method, str) else method
    target = target.encode() if isinstance(target, str) else target
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    if auth:
        lines.append(AUTH)
    lines.extend(headers)
    if body is not None:
        if content_type is not None:
            lines.append(b"Content-Type: " + content_type)
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def exchange(base: str, raw: bytes) -> Answer:
    """Send ``raw`` on a new connection and read the answer until it closes."""
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        try:
            sock.sendall(raw)
        except ConnectionError:
            pass  # the server may answer and close before reading it all
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return Answer(int(status_line.split()[1]), headers, body)


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


# -- the battery -------------------------------------------------------------------


def body_of(value: Any) -> bytes:
    return json.dumps(value).encode()  # (the stdlib writes integers of any size)


def text(body: str = "hi") -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "text": body}]}


BIG = [2**64, -(2**64), 10**30, 2**63]
NOT_INT = ["5", [], {}, True, 1.5, *BIG]
NOT_OBJECT = ["x", [], 5, True, 1.5]


def field_cases() -> Iterator[Case]:
    """Wrong types (and out-of-range values) in every field of every body."""
    ctx = "/v1/contexts/keep"

    def put(label: str, body: Any) -> Case:
        return Case(f"put-{label}", request("PUT", ctx, body_of(body)), "api", 400)

    for i, v in enumerate([*NOT_INT, 0, -1, 1e308]):
        yield put(f"token_budget-{i}", {"token_budget": v})
    for i, v in enumerate(["0.5", [], {}, True, 0, -0.1, 1.5, 2**64]):
        yield put(f"trigger_ratio-{i}", {"trigger_ratio": v})
    policies: list[Any] = [
        "last_n",
        [],
        5,
        True,
        {},
        {"strategy": 5},
        {"strategy": "nope"},
        {"strategy": "last_n", "config": "x"},
        {"strategy": "last_n", "config": {"limit": "5"}},
        {"strategy": "last_n", "config": {"limit": 0}},
        {"strategy": "last_n", "config": {"limit": 2**64}},
        {"strategy": "skip_parts", "config": {"limit": 5, "skip_kinds": "tool"}},
        {"strategy": "skip_parts", "config": {"limit": 5, "skip_kinds": [5]}},
        {"strategy": "summarize", "config": {}},
        {"strategy": "summarize", "config": {"model": 5}},
    ]
    for i, v in enumerate(policies):
        yield put(f"policy-{i}", {"policy": v})
    for i, v in enumerate(NOT_OBJECT):
        yield put(f"metadata-{i}", {"metadata": v})
        yield Case(
            f"patch-metadata-{i}",
            request("PATCH", f"{ctx}/metadata", body_of({"metadata": v})),
            "api",
            400,
        )
    yield Case(
        "patch-metadata-null", request("PATCH", f"{ctx}/metadata", b'{"metadata":null}'), "api"
    )
    yield Case("patch-metadata-missing", request("PATCH", f"{ctx}/metadata", b"{}"), "api")

    def post(label: str, body: Any, status: int | None = 400) -> Case:
        return Case(
            f"append-{label}", request("POST", f"{ctx}/messages", body_of(body)), "api", status
        )

    for i, v in enumerate(["hi", [], 5, True, {}, None]):
        yield post(f"message-{i}", {"message": v})
    for i, v in enumerate([5, "admin", None, [], ""]):
        yield post(f"role-{i}", {"message": {"role": v, "parts": []}})
    bad_parts: list[Any] = [
        "hi",
        {},
        5,
        None,
        [5],
        ["x"],
        [[]],
        [{}],
        [{"type": 5}],
        [{"type": ""}],
        [{"type": None}],
        [{"type": ["text"]}],
    ]
    for i, v in enumerate(bad_parts):
        yield post(f"parts-{i}", {"message": {"role": "user", "parts": v}})
    for i, v in enumerate(NOT_OBJECT):
        yield post(f"msg-metadata-{i}", {"message": {**text(), "metadata": v}})
    for i, v in enumerate([*NOT_INT, -1]):
        yield post(f"token_count-{i}", {"message": {**text(), "token_count": v}})
    for i, v in enumerate([*NOT_INT, -1]):
        yield post(f"if_version-{i}", {"message": text(), "if_version": v})
    yield post("if_version-stale", {"message": text(), "if_version": 999}, 409)
    for i, v in enumerate(["x", {}, 5, [], [5], [{}], [{"role": "user"}], [text(), "x"]]):
        yield post(f"messages-{i}", {"messages": v})
    yield post("message-and-messages", {"message": text(), "messages": [text()]})
    for i, v in enumerate([5, "", [], "k" * 300]):
        yield post(f"idempotency_key-{i}", {"message": text(), "idempotency_key": v})

    def compact(label: str, body: Any, status: int | None = 400) -> Case:
        raw = request("POST", f"{ctx}/compact", body_of(body))
        return Case(f"compact-{label}", raw, "api", status)

    bad_replacements: list[Any] = ["x", {}, 5, True, [5], [{}], [{"role": "user", "parts": "x"}]]
    for i, v in enumerate(bad_replacements):
        yield compact(f"replacement-{i}", {"replacement": v})
    yield compact("replacement-missing", {})
    for i, v in enumerate([*NOT_INT, -1]):
        yield compact(f"if_version-{i}", {"replacement": [], "if_version": v})
    yield compact("if_version-stale", {"replacement": [], "if_version": 999}, 409)
    for i, v in enumerate([*NOT_INT, 0, -1, 999]):
        yield compact(f"up_to_seq-{i}", {"replacement": [], "up_to_seq": v})

    # headers that carry values
    valid = body_of({"message": text()})
    for i, key in enumerate([b"k" * 256, b"a\tb", b"\xff\xfe", b"caf\xc3\xa9"]):
        raw = request("POST", f"{ctx}/messages", valid, (b"Idempotency-Key: " + key,))
        yield Case(f"idempotency-header-{i}", raw, "api", 400)


def query_cases() -> Iterator[Case]:
    ctx = "/v1/contexts/keep"
    bad_ints = ["-1", "abc", "1.5", "1e400", "18446744073709551616", "%00", "0x10", "%ff", "1%001"]
    for i, v in enumerate(bad_ints):
        yield Case(f"tail-offset-{i}", request("GET", f"{ctx}/tail?offset={v}"), "api", 400)
        yield Case(f"tail-limit-{i}", request("GET", f"{ctx}/tail?limit={v}"), "api", 400)
        yield Case(f"after_seq-{i}", request("GET", f"{ctx}/messages?after_seq={v}"), "api", 400)
        yield Case(f"budget-{i}", request("GET", f"{ctx}/context?budget_tokens={v}"), "api", 400)
        yield Case(f"window-if-{i}", request("GET", f"{ctx}/context?if_version={v}"), "api", 400)
        yield Case(f"list-limit-{i}", request("GET", f"/v1/contexts?limit={v}"), "api", 400)
    for i, target in enumerate(
        [
            f"{ctx}/tail?limit=0",
            f"{ctx}/tail?limit=99999999",
            f"{ctx}/messages?limit=0",
            f"{ctx}/context?budget_tokens=0",
            f"{ctx}/context?format=xml",
            f"{ctx}/summaries?limit=0",
            f"{ctx}/summaries?cursor=%%%",
            "/v1/contexts?cursor=!!!",
            "/v1/contexts?cursor=%ff%fe",
            "/v1/contexts?cursor=bm9wZQ",
            f"{ctx}/stream",
            f"{ctx}/stream?cursor=x",
        ]
    ):
        yield Case(f"query-{i}", request("GET", target), "api", 400)
    yield Case("window-if-stale", request("GET", f"{ctx}/context?if_version=999"), "api", 409)


def body_bytes_cases() -> Iterator[Case]:
    """Bytes that are not a JSON object: junk, nesting, bad UTF-8, NUL, wrong types."""
    routes = [
        ("PUT", "/v1/contexts/keep"),
        ("PATCH", "/v1/contexts/keep/metadata"),
        ("POST", "/v1/contexts/keep/messages"),
        ("POST", "/v1/contexts/keep/compact"),
        ("PUT", "/v1/contexts/fresh-body"),
    ]
    nested = b"[" * DEEP + b"]" * DEEP
    bodies = {
        "junk": b"{nope",
        "truncated": b'{"message": {"role": "user", "parts": [',
        "array": b"[]",
        "null": b"null",
        "number": b"5",
        "string": b'"x"',
        "two-values": b"{}{}",
        "deep-array": nested,
        "deep-field": b'{"metadata": {"a": ' + nested + b"}}",
        "deep-object": b'{"metadata": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}",
        "bad-utf8": b'{"metadata": {"a": "\xff\xfe"}}',
        "bad-utf8-key": b'{"metadata": {"\xc3\x28": 1}}',
        "overlong-utf8": b'{"metadata": {"a": "\xc0\xaf"}}',
        "lone-surrogate": b'{"metadata": {"a": "\\ud800"}}',
        "raw-nul": b'{"metadata": {"a": "\x00"}}',
        "nul-after": b'{"metadata": {}}\x00',
        "1e400": b'{"token_budget": 1e400, "metadata": {"a": 1e400}}',
        "nan": b'{"token_budget": NaN, "metadata": {"a": NaN}}',
        "huge-literal": b'{"token_budget": 1'
        + b"0" * 400
        + b', "metadata": {"a": 1'
        + b"0" * 400
        + b"}}",
        "bom": b'\xef\xbb\xbf{"metadata": {"a": 1}}',
        "utf16": '{"metadata": {"a": 1}}'.encode("utf-16"),
    }
    for method, path in routes:
        for label, body in bodies.items():
            yield Case(
                f"{method}-{path.rsplit('/', 1)[-1]}-{label}",
                request(method, path, body),
                "api",
                400,
            )
        # a JSON object declared as something else
        for i, ctype in enumerate([b"text/plain", b"application/x-www-form-urlencoded", b"\xff"]):
            raw = request(method, path, b'{"metadata": {"x": 1}}', content_type=ctype)
            yield Case(f"{method}-{path.rsplit('/', 1)[-1]}-ctype-{i}", raw, "api", 415)
    # empty bodies where a field is required
    for method, path in routes[1:4]:
        yield Case(
            f"{method}-{path.rsplit('/', 1)[-1]}-empty", request(method, path, b""), "api", 400
        )


def path_cases() -> Iterator[Case]:
    valid = body_of({"message": text()})
    junk = [
        "%ff%fe",
        "%00",
        "a%2Fb",
        "%ZZ",
        "%C0%AF",
        "%E2%80%AE",
        "..%2F..%2Fetc",
        "%20keep",
        "keep%0A",
        "keep%3Fx",
        "a" * 257,
        "%F0%9F%92%A9",
    ]
    for i, cid in enumerate(junk):
        yield Case(f"get-id-{i}", request("GET", f"/v1/contexts/{cid}"), "api", 400)
        yield Case(f"put-id-{i}", request("PUT", f"/v1/contexts/{cid}", b"{}"), "api", 400)
        yield Case(f"append-id-{i}", request("POST", f"/v1/contexts/{cid}/messages", valid), "api")
    huge = b"a" * 100_000
    raw_paths = [b"/v1/contexts/\xff\xfe", b"/v1/contexts/a\x00b", b"/v1/contexts/" + huge]
    for i, target in enumerate(raw_paths):
        yield Case(f"raw-path-get-{i}", request("GET", target), "parser", 400)
        yield Case(f"raw-path-put-{i}", request("PUT", target, b"{}"), "parser", 400)
    # unknown routes and methods; under a provider's base URL, in its shape
    for i, (target, kind) in enumerate(
        [
            ("/", "api"),
            ("/v1", "api"),
            ("/v1/nope", "api"),
            ("/v2/contexts/keep", "api"),
            ("/v1/contexts/keep/nope", "api"),
            ("/v1/contexts/keep/openai/nope", "openai"),
            ("/v1/contexts/keep/anthropic/v1/nope", "anthropic"),
            ("/v1/messages/nope", "anthropic"),
        ]
    ):
        yield Case(f"unknown-route-{i}", request("GET", target), kind, 404)
    wrong_methods = [
        ("PATCH", "/v1/contexts/keep", "api"),
        ("POST", "/v1/contexts/keep", "api"),
        ("DELETE", "/v1/contexts", "api"),
        ("POST", "/v1/contexts/keep/tail", "api"),
        ("PUT", "/v1/contexts/keep/messages", "api"),
        ("GET", "/v1/contexts/keep/compact", "api"),
        ("DELETE", "/v1/contexts/keep/context", "api"),
        ("GET", "/v1/chat/completions", "openai"),
        ("PUT", "/v1/contexts/keep/openai/chat/completions", "openai"),
        ("DELETE", "/v1/contexts/keep/anthropic/v1/messages", "anthropic"),
        ("GET", "/v1/messages", "anthropic"),
        ("POST", "/health/live", "api"),
    ]
    for method, target, kind in wrong_methods:
        raw = request(method, target, b"{}")
        yield Case(f"method-{method}-{target}", raw, kind, 405)
    yield Case("method-BREW", request("BREW", "/v1/contexts/keep"), "parser", 400)
    yield Case("method-junk", request(b"G\xffT", "/v1/contexts/keep"), "parser", 400)


def header_cases() -> Iterator[Case]:
    target = "/v1/contexts/keep"
    for i, value in enumerate(
        [b"Bearer \xff\xfe", b"Bearer " + KEY.encode() + b"x", b"Basic a2V5", b"\xff"]
    ):
        raw = request("PUT", target, b"{}", (b"Authorization: " + value,), auth=False)
        yield Case(f"auth-{i}", raw, "api", 401)
    raw = request("PUT", target, b"{}", (b"X-Fastpaca-Key: \xc3\x28",), auth=False)
    yield Case("fastpaca-key-bad-utf8", raw, "api", 401)
    # a proxy route without our key: 401 in the provider's shape
    for path, kind in [
        ("/v1/chat/completions", "openai"),
        ("/v1/contexts/keep/openai/responses", "openai"),
        ("/v1/messages", "anthropic"),
        ("/v1/contexts/keep/anthropic/v1/messages", "anthropic"),
    ]:
        raw = request("POST", path, b"{}", (b"Authorization: Bearer wrong",), auth=False)
        yield Case(f"auth-proxy-{path}", raw, kind, 401)
    for i, value in enumerate([b"Bearer \xff\xfe", b"Bearer wrong"]):
        raw = request("GET", "/metrics", None, (b"Authorization: " + value,), auth=False)
        yield Case(f"metrics-key-{i}", raw, "api", 401)
    long = b"a" * 65536
    for i, header in enumerate(
        [b"X-Junk: " + long, b"Authorization: Bearer " + long, b"X-" + long + b": 1"]
    ):
        yield Case(f"long-header-{i}", request("PUT", target, b"{}", (header,)), "parser", 400)
    for i, header in enumerate([b"X-Junk: a\x00b", b"X-J\x00nk: 1", b"Content-Length: abc"]):
        yield Case(f"bad-header-{i}", request("PUT", target, b"{}", (header,)), "parser", 400)
    chunked = (
        b"PUT /v1/contexts/keep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + AUTH
        + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    yield Case("bad-chunk", chunked, "parser", 400)


PROXY_ROUTES = [
    # (name, path, extra headers, kind, conversation key)
    ("chat-path", "/v1/contexts/keep/openai/chat/completions", (), "openai", "messages"),
    ("chat-new", "/v1/contexts/fresh-chat/openai/chat/completions", (), "openai", "messages"),
    ("chat-header", "/v1/chat/completions", (b"X-Fastpaca-Context: keep",), "openai", "messages"),
    ("responses-path", "/v1/contexts/keep/openai/responses", (), "openai", "input"),
    ("responses-header", "/v1/responses", (b"X-Fastpaca-Context: fresh-r",), "openai", "input"),
    ("anthropic-path", "/v1/contexts/keep/anthropic/v1/messages", (), "anthropic", "messages"),
    ("anthropic-new", "/v1/contexts/fresh-a/anthropic/v1/messages", (), "anthropic", "messages"),
    ("anthropic-header", "/v1/messages", (b"X-Fastpaca-Context: keep",), "anthropic", "messages"),
]


def proxy_cases() -> Iterator[Case]:
    nested = b"[" * DEEP + b"]" * DEEP
    not_objects = {
        "empty": b"",
        "junk": b"{nope",
        "array": b"[]",
        "null": b"null",
        "number": b"5",
        "deep": nested,
        "deep-object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        "bad-utf8": b'{"model": "\xff", "messages": []}',
        "raw-nul": b'{"model": "a\x00"}',
        "1e400": b'{"model": "m", "temperature": 1e400}',
    }
    for name, path, headers, kind, key in PROXY_ROUTES:
        for label, body in not_objects.items():
            yield Case(f"proxy-{name}-{label}", request("POST", path, body, headers), kind, 400)
        conversations: list[Any] = [None, {}, 5, True, [5], ["x"], [[]], []]
        if key == "messages":
            conversations.append("hi")  # (a string is a valid Responses input)
        if kind == "openai" and key == "messages":
            conversations.append([{"role": "system", "content": "only a preamble"}])
        for i, value in enumerate(conversations):
            body = {"model": "m", "max_tokens": 5}
            if value is not None:
                body[key] = value
            raw = request("POST", path, body_of(body), headers)
            yield Case(f"proxy-{name}-{key}-{i}", raw, kind, 400)
    # pass-through (no context): a body that is not a JSON object never leaves
    for path, kind in [
        ("/v1/chat/completions", "openai"),
        ("/v1/responses", "openai"),
        ("/v1/messages", "anthropic"),
    ]:
        for label in ("empty", "junk", "array", "deep", "bad-utf8"):
            raw = request("POST", path, not_objects[label])
            yield Case(f"passthrough-{path}-{label}", raw, kind, 400)
    # an invalid context id, with a body that is otherwise fine
    chat = body_of({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    for i, cid in enumerate(["bad%20id", "a" * 257, "%ff", "..%2F"]):
        raw = request("POST", f"/v1/contexts/{cid}/openai/chat/completions", chat)
        yield Case(f"proxy-path-id-{i}", raw, "openai", 400)
    for i, cid in enumerate([b"bad id", b"a" * 257, b"\xff\xfe", b"caf\xc3\xa9", b"a/b"]):
        headers = (b"X-Fastpaca-Context: " + cid,)
        raw = request("POST", "/v1/chat/completions", chat, headers)
        yield Case(f"proxy-header-id-{i}", raw, "openai", 400)


MID = 300  # parses (orjson reads 1,024 levels deep) but could not be written (254)


def depth_and_size_cases() -> Iterator[Case]:
    """JSON that parses but nests deeper than can be stored (and answered) or
    sent on; bodies that cannot be decoded; proxy requests too large to convert
    on the loop."""

    def deep(levels: int) -> bytes:
        return b"[" * levels + b"]" * levels

    for levels in (MID, INPUT_DEPTH):  # a policy's config is stored and answered
        for path in ("/v1/contexts/keep", "/v1/contexts/fresh-deep"):
            for strategy in (b"manual", b"last_n"):
                body = (
                    b'{"policy": {"strategy": "'
                    + strategy
                    + b'", "config": {"x": '
                    + deep(levels)
                    + b"}}}"
                )
                name = f"PUT-{path.rsplit('/', 1)[-1]}-{strategy.decode()}-config-{levels}-deep"
                yield Case(name, request("PUT", path, body), "api", 400)
    for name, path, headers, kind, key in PROXY_ROUTES:
        message = {"role": "user", "content": "hi"}
        # the rest of the body is sent on, not stored: refused past what can be written
        for levels in (MID, MAX_DEPTH - 1):
            head = b'{"model": "m", "max_tokens": 5, "extra": ' + deep(levels) + b', "'
            raw = request(
                "POST", path, head + key.encode() + b'": ' + body_of([message]) + b"}", headers
            )
            yield Case(f"proxy-{name}-extra-{levels}-deep", raw, kind, 400)
        if kind == "openai":  # (an Anthropic message's unknown keys are dropped, not sent)
            for levels in (MID, INPUT_DEPTH):  # a message is stored, and answered later
                inner = body_of([{**message, "x": 0}]).replace(b"0}", deep(levels) + b"}")
                raw = request(
                    "POST",
                    path,
                    b'{"model": "m", "max_tokens": 5, "' + key.encode() + b'": ' + inner + b"}",
                    headers,
                )
                yield Case(f"proxy-{name}-message-key-{levels}-deep", raw, kind, 400)
        many = body_of({"model": "m", "max_tokens": 5, key: [message] * 10_001})
        yield Case(f"proxy-{name}-10001-messages", request("POST", path, many, headers), kind, 400)
    for name, path, headers, kind, key in PROXY_ROUTES[:3]:  # OpenAI Chat
        for i, options in enumerate([[1], "x", True, 5]):
            body = {
                "model": "m",
                "stream": True,
                "stream_options": options,
                key: [{"role": "user", "content": "hi"}],
            }
            yield Case(
                f"proxy-{name}-stream-options-{i}",
                request("POST", path, body_of(body), headers),
                kind,
                400,
            )
    corrupt = [
        (b"gzip", b"0123456789"),
        (b"deflate", b"0123456789"),
        (b"gzip", b"\x1f\x8b\x08\x00junk"),
    ]
    for method, path, kind in [
        ("POST", "/v1/contexts/keep/messages", "api"),
        ("PUT", "/v1/contexts/fresh-gzip", "api"),
        ("POST", "/v1/contexts/keep/openai/chat/completions", "openai"),
        ("POST", "/v1/contexts/keep/anthropic/v1/messages", "anthropic"),
    ]:
        for i, (encoding, body) in enumerate(corrupt):
            raw = request(method, path, body, (b"Content-Encoding: " + encoding,))
            yield Case(
                f"{method}-{path[len('/v1/contexts/') :]}-corrupt-{encoding.decode()}-{i}",
                raw,
                kind,
                400,
            )


CASES = [
    *field_cases(),
    *query_cases(),
    *body_bytes_cases(),
    *path_cases(),
    *header_cases(),
    *proxy_cases(),
    *depth_and_size_cases(),
]


# -- the stack and what it stores ----------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    db: Path = tmp_path_factory.mktemp("bad-input") / "bad.db"
    with run_stack(f"sqlite:///{db}", api_key=KEY, metrics_key="metrics-key") as running:
        api = running.api
        created = api.put(
            "/v1/contexts/keep",
            json={
                "token_budget": 500,
                "metadata": {"owner": "t"},
                "policy": {"strategy": "manual", "config": {}},
            },
        )
        assert created.status_code == 200, created.text
        for i in range(4):
            reply = api.post("/v1/contexts/keep/messages", json={"message": text(f"message {i}")})
            assert reply.status_code == 201, reply.text
        summary = {"replacement": [text("summary of 1-2")], "up_to_seq": 2}
        assert api.post("/v1/contexts/keep/compact", json=summary).status_code == 200
        assert (
            api.post("/v1/contexts/keep/messages", json={"message": text("after")}).status_code
            == 201
        )
        yield running


SNAPSHOT_PATHS = [
    "/v1/contexts/keep",
    "/v1/contexts/keep/tail?limit=1000",
    "/v1/contexts/keep/messages?limit=1000",
    "/v1/contexts/keep/context",
    "/v1/contexts/keep/context?format=anthropic",
    "/v1/contexts",
]


def snapshot(stack: Stack) -> list[bytes]:
    out = []
    for path in SNAPSHOT_PATHS:
        reply = stack.api.get(path)
        assert reply.status_code == 200, (path, reply.text)
        out.append(reply.content)
    return out


@pytest.fixture(scope="module")
def before(stack: Stack) -> list[bytes]:
    return snapshot(stack)


def check_shape(case: Case, answer: Answer) -> None:
    if case.kind == "parser":
        return
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
    body = loads(answer.body)
    if case.kind == "api":
        assert isinstance(body, dict) and set(body) == {"error", "message"}, body
        assert isinstance(body["error"], str) and body["error"]
        assert isinstance(body["message"], str) and body["message"]
    elif case.kind == "openai":
        error = body["error"]
        assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"], body
        assert isinstance(error["type"], str) and error["type"], body
    else:
        assert body["type"] == "error", body
        error = body["error"]
        assert isinstance(error["type"], str) and isinstance(error["message"], str), body


@pytest.mark.parametrize("case", CASES, ids=[c.name[:80] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(
    case: Case, stack: Stack, before: list[bytes]
) -> None:
    answer = exchange(stack.base, case.raw)
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    if case.status is not None:
        assert answer.status == case.status, (answer.status, answer.body[:300])
    if answer.status == 405:
        assert answer.headers.get("allow"), answer.headers
    check_shape(case, answer)
    assert snapshot(stack) == before
    assert stack.fake.requests == [], [r.path for r in stack.fake.requests]


def test_the_battery_is_broad() -> None:
    kinds = {case.kind for case in CASES}
    assert kinds == {"api", "openai", "anthropic", "parser"}
    assert len({case.name for case in CASES}) == len(CASES)
    assert len(CASES) > 400
