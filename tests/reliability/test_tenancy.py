"""Tenants: zero cross-tenant reads or writes, on every route (REST, websocket, proxy).

Three tenants share one server: the default one (``FASTPACA_API_KEY``, ids kept
unprefixed) and ``acme`` and ``globex`` (``FASTPACA_API_KEYS``). The routes
come from the OpenAPI document and the proxy's route table, and a test holds
the application's router to that list, so a new ``/v1`` route cannot escape.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from live_api import Answer, provider_error
from loopback import serve_app

from fastpaca_core import Engine, Store, open_store
from fastpaca_core.errors import ValidationError
from fastpaca_core.http import create_app
from fastpaca_core.http.openapi import openapi_document
from fastpaca_core.http.tenants import DEFAULT_TENANT, Tenants
from fastpaca_core.jsonutil import dumps, loads
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy
from fastpaca_proxy.fake_upstream import FakeUpstream
from fastpaca_proxy.passthrough import AS_IS
from fastpaca_proxy.routes import routes as proxy_routes

DEFAULT_KEY = "key-default"
ACME_KEY = "key-acme"
GLOBEX_KEY = "key-globex"
METRICS_KEY = "key-metrics"
PROVIDER_KEY = "sk-provider"
KEYS = {"default": DEFAULT_KEY, "acme": ACME_KEY, "globex": GLOBEX_KEY}


@dataclass
class Server:
    base: str
    app: web.Application
    session: aiohttp.ClientSession
    fake: FakeUpstream

    async def call(
        self,
        method: str,
        path: str,
        tenant: str | None,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        if tenant is not None:
            sent.setdefault("X-Fastpaca-Key", KEYS[tenant])
        data = None if json is None else dumps(json)
        if data is not None:
            sent["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.base + path, data=data, headers=sent, params=params
        ) as resp:
            return Answer(resp.status, dict(resp.headers), await resp.read())

    async def put(self, tenant: str, cid: str, **config: Any) -> dict[str, Any]:
        reply = await self.call("PUT", f"/v1/contexts/{cid}", tenant, json=config)
        assert reply.status == 200, reply.body
        data: dict[str, Any] = reply.json()
        return data

    async def say(self, tenant: str, cid: str, text: str, **extra: Any) -> Answer:
        body = {"message": {"role": "user", "parts": [{"type": "text", "text": text}]}, **extra}
        return await self.call("POST", f"/v1/contexts/{cid}/messages", tenant, json=body)

    async def texts(self, tenant: str, cid: str) -> list[str]:
        reply = await self.call("GET", f"/v1/contexts/{cid}/messages", tenant)
        assert reply.status == 200, reply.body
        return [
            "".join(p.get("text", "") for p in m["parts"] if p["type"] == "text")
            for m in reply.json()["messages"]
        ]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with FakeUpstream(api_key=PROVIDER_KEY) as fake:
        settings = Settings(
            store=f"sqlite:///{tmp_path / 'tenancy.db'}",
            api_key=DEFAULT_KEY,
            api_keys=f"acme:{ACME_KEY}, globex:{GLOBEX_KEY}",
            metrics_key=METRICS_KEY,
            openai_base_url=fake.openai_base_url,
            anthropic_base_url=fake.base_url,
        )
        app = install_proxy(create_app(settings))
        runner, port = await serve_app(app)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                yield Server(base, app, session, fake)
        finally:
            await runner.cleanup()


# -- the routes ---------------------------------------------------------------


def _message(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "text": text}]}


# A body for each canonical route that needs one; every other route is called
# without a body. A new route that needs a body fails the tests until added.
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/v1/contexts/{id}"): {"metadata": {"by": "intruder"}},
    ("PATCH", "/v1/contexts/{id}/metadata"): {"metadata": {"by": "intruder"}},
    ("POST", "/v1/contexts/{id}/messages"): {"message": _message("intruder")},
    ("POST", "/v1/contexts/{id}/compact"): {"replacement": [_message("intruder summary")]},
}


def _openapi_routes() -> set[tuple[str, str]]:
    found = set()
    for path, item in openapi_document()["paths"].items():
        for method in item:
            if method in ("get", "put", "post", "patch", "delete"):
                found.add((method.upper(), path))
    return found


def _proxy_routes() -> set[tuple[str, str]]:
    return {(route.method, route.path) for route in proxy_routes if isinstance(route, web.RouteDef)}


def _api_routes() -> set[tuple[str, str]]:
    return {r for r in _openapi_routes() | _proxy_routes() if r[1].startswith("/v1")}


def _concrete(path: str, cid: str = "x") -> str:
    return path.replace("{id}", cid).replace("{model}", "gpt-test")


def test_every_api_route_of_the_app_is_listed_here(tmp_path: Path) -> None:
    """The router holds no /v1 route that the OpenAPI document and the proxy
    table (what these tests walk) do not list."""
    app = install_proxy(create_app(Settings(store=f"sqlite:///{tmp_path / 'x.db'}")))
    mounted = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/v1")
        and route.method != "HEAD"
    }
    assert mounted, "no /v1 route found"
    assert mounted <= _api_routes(), mounted - _api_routes()
    assert _api_routes() <= mounted, _api_routes() - mounted


# -- authentication -----------------------------------------------------------


def _is_error_shape(reply: Answer, code: str) -> None:
    assert reply.headers["Content-Type"].startswith("application/json"), reply.headers
    body = reply.json()
    assert set(body) == {"error", "message"}, body
    assert body["error"] == code, body


def _provider_of(path: str) -> str:
    """The provider whose shape a proxy route's errors come in."""
    anthropic = "/anthropic/" in path or path.startswith("/v1/messages")
    return "anthropic" if anthropic else "openai"


async def test_every_api_route_needs_a_key(server: Server) -> None:
    proxied = _proxy_routes()
    for method, path in sorted(_api_routes()):
        body = BODIES.get((method, path))
        for headers in ({}, {"X-Fastpaca-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            reply = await server.call(method, _concrete(path), None, json=body, headers=headers)
            assert reply.status == 401, (method, path, headers, reply.body)
            if (method, path) in proxied:  # in the provider's own shape
                error = provider_error(reply, 401, _provider_of(path), "authentication_error")
                assert error["message"] == "Missing or invalid API key"
            else:
                _is_error_shape(reply, "unauthorized")
            assert reply.headers["WWW-Authenticate"] == "Bearer"
    # the websocket route refuses before upgrading
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.session.ws_connect(server.base + "/v1/contexts/x/stream")
    assert refused.value.status == 401
    assert server.fake.requests == []  # nothing reached the upstream


async def test_each_key_works_as_bearer_or_header(server: Server) -> None:
    for tenant, key in KEYS.items():
        for headers in ({"Authorization": f"Bearer {key}"}, {"X-Fastpaca-Key": key}):
            reply = await server.call("GET", "/v1/contexts", None, headers=headers)
            assert reply.status == 200, (tenant, reply.body)


async def test_metrics_need_the_metrics_key_and_health_stays_open(server: Server) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {ACME_KEY}"},  # a tenant key is not the metrics key
        {"X-Fastpaca-Key": DEFAULT_KEY},
    ):
        reply = await server.call("GET", "/metrics", None, headers=headers)
        assert reply.status == 401, headers
        _is_error_shape(reply, "unauthorized")
    for headers in ({"Authorization": f"Bearer {METRICS_KEY}"}, {"X-Fastpaca-Key": METRICS_KEY}):
        reply = await server.call("GET", "/metrics", None, headers=headers)
        assert reply.status == 200
        assert b"fastpaca_" in reply.body
    for path in ("/health/live", "/health/ready", "/openapi.json"):
        assert (await server.call("GET", path, None)).status == 200, path


# -- REST and websocket: another tenant's context does not exist ------------------


def _leaks(reply: Answer) -> bool:
    """Whether an internal id (``tenant/...``) shows anywhere in a response."""
    text = reply.body.decode(errors="replace") + repr(reply.headers)
    return re.search(r"\b(acme|globex)/", text) is not None


async def test_another_tenants_context_is_404_on_every_route(server: Server) -> None:
    await server.put("acme", "secret", metadata={"owner": "acme"})
    for text in ("a1", "a2"):
        assert (await server.say("acme", "secret", text)).status == 201
    await server.put("default", "legacy", metadata={"owner": "default"})
    assert (await server.say("default", "legacy", "d1")).status == 201
    before = (await server.call("GET", "/v1/contexts/secret", "acme")).json()

    rest = _openapi_routes() - _proxy_routes()  # the proxy: see the proxy tests below
    routes = sorted(r for r in rest if "{id}" in r[1] and r[1].startswith("/v1"))
    assert len(routes) >= 10
    for cid, intruders in (("secret", ("globex", "default")), ("legacy", ("acme", "globex"))):
        for intruder in intruders:
            for method, path in routes:
                if path.endswith("/stream") or method == "PUT":
                    continue  # below: a websocket; PUT creates the intruder's own context
                if method == "DELETE":  # 204 for an id the caller does not hold (API.md)
                    reply = await server.call(method, _concrete(path, cid), intruder)
                    assert (reply.status, reply.body) == (204, b"")
                    continue
                reply = await server.call(
                    method, _concrete(path, cid), intruder, json=BODIES.get((method, path))
                )
                assert reply.status == 404, (intruder, method, path, reply.body)
                _is_error_shape(reply, "context_not_found")
                assert reply.json()["message"] == f"Context {cid!r} not found"
                assert not _leaks(reply)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await server.session.ws_connect(
                    f"{server.base}/v1/contexts/{cid}/stream",
                    headers={"X-Fastpaca-Key": KEYS[intruder]},
                )
            assert refused.value.status == 404
    # nothing of the owner changed
    after = (await server.call("GET", "/v1/contexts/secret", "acme")).json()
    assert after == before
    assert await server.texts("acme", "secret") == ["a1", "a2"]
    assert await server.texts("default", "legacy") == ["d1"]


async def test_put_with_another_tenants_id_makes_an_own_context(server: Server) -> None:
    acme = await server.put("acme", "shared", token_budget=1234, metadata={"owner": "acme"})
    globex = await server.put("globex", "shared", metadata={"owner": "globex"})
    assert acme["id"] == globex["id"] == "shared"  # public ids only
    assert globex["token_budget"] == 8000 and globex["version"] == 0
    again = (await server.call("GET", "/v1/contexts/shared", "acme")).json()
    assert again["metadata"] == {"owner": "acme"} and again["token_budget"] == 1234


async def test_same_public_id_is_two_independent_contexts(server: Server) -> None:
    for tenant in ("default", "acme", "globex"):
        await server.put(tenant, "chat")
        for n in range(2):
            reply = await server.say(tenant, "chat", f"{tenant}-{n}")
            assert reply.status == 201
            assert reply.json()["seq"] == n + 1  # each tenant's log starts at 1
    for tenant in ("default", "acme", "globex"):
        assert await server.texts(tenant, "chat") == [f"{tenant}-0", f"{tenant}-1"]
        for method, path in (
            ("GET", "/v1/contexts/chat"),
            ("GET", "/v1/contexts/chat/tail"),
            ("GET", "/v1/contexts/chat/context"),
            ("GET", "/v1/contexts/chat/summaries"),
            ("PATCH", "/v1/contexts/chat/metadata"),
        ):
            body = {"metadata": {"t": tenant}} if method == "PATCH" else None
            reply = await server.call(method, path, tenant, json=body)
            assert reply.status == 200, reply.body
            assert not _leaks(reply)
        window = (await server.call("GET", "/v1/contexts/chat/context", tenant)).json()
        texts = [m["parts"][0]["text"] for m in window["messages"]]
        assert texts == [f"{tenant}-0", f"{tenant}-1"]
        ctx = (await server.call("GET", "/v1/contexts/chat", tenant)).json()
        assert ctx["id"] == "chat" and ctx["metadata"] == {"t": tenant}
    # a tombstone in one tenant leaves the others writable
    assert (await server.call("DELETE", "/v1/contexts/chat", "acme")).status == 204
    tombstoned = await server.say("acme", "chat", "late")
    assert tombstoned.status == 409
    assert tombstoned.json()["message"] == "Context 'chat' is tombstoned: its history is read-only"
    assert (await server.say("globex", "chat", "globex-2")).status == 201
    compacted = await server.call(
        "POST",
        "/v1/contexts/chat/compact",
        "globex",
        json={"replacement": [_message("summary")]},
    )
    assert compacted.status == 200
    assert await server.texts("default", "chat") == ["default-0", "default-1"]


async def test_lists_show_only_the_tenants_own_contexts(server: Server) -> None:
    owned = {
        "default": {f"d{n}" for n in range(3)},
        "acme": {f"a{n}" for n in range(4)} | {"both"},
        "globex": {f"g{n}" for n in range(2)} | {"both"},
    }
    for tenant, ids in owned.items():
        for cid in sorted(ids):
            await server.put(tenant, cid)
    for tenant, ids in owned.items():
        seen: list[str] = []
        cursor: str | None = None
        while True:  # page by page, one context a page
            params = {"limit": "1"} if cursor is None else {"limit": "1", "cursor": cursor}
            reply = await server.call("GET", "/v1/contexts", tenant, params=params)
            assert reply.status == 200, reply.body
            assert not _leaks(reply)
            page = reply.json()
            seen.extend(c["id"] for c in page["contexts"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert tenant not in _decoded(cursor)  # cursors hold public ids too
        assert sorted(seen) == sorted(ids), tenant
        assert len(seen) == len(ids)


def _decoded(cursor: str) -> str:
    import base64

    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()


async def test_idempotency_keys_are_per_tenant(server: Server) -> None:
    for tenant in ("acme", "globex"):
        await server.put(tenant, "idem")
    first = await server.say("acme", "idem", "same", idempotency_key="k-1")
    other = await server.say("globex", "idem", "same", idempotency_key="k-1")
    assert first.status == other.status == 201
    assert "Idempotent-Replayed" not in first.headers
    assert "Idempotent-Replayed" not in other.headers  # a write, not acme's replay
    retry = await server.say("acme", "idem", "same", idempotency_key="k-1")
    assert retry.status == 201 and retry.headers.get("Idempotent-Replayed") == "true"
    assert await server.texts("acme", "idem") == ["same"]
    assert await server.texts("globex", "idem") == ["same"]
    reused = await server.say("globex", "idem", "different", idempotency_key="k-1")
    assert reused.status == 422  # within one tenant, the key stays taken


async def test_websocket_sees_only_its_tenants_events(server: Server) -> None:
    for tenant in ("acme", "globex"):
        await server.put(tenant, "live")
    assert (await server.say("acme", "live", "acme-0")).status == 201
    async with server.session.ws_connect(
        f"{server.base}/v1/contexts/live/stream?cursor=0",
        headers={"Authorization": f"Bearer {ACME_KEY}"},
    ) as ws:
        frames: list[dict[str, Any]] = []

        async def next_message() -> dict[str, Any]:
            while True:
                raw = await ws.receive_str(timeout=10)
                assert not re.search(r"\b(acme|globex)/", raw), raw
                frame: dict[str, Any] = loads(raw)
                frames.append(frame)
                if frame["type"] == "message":
                    return frame

        first = await next_message()
        assert first["message"]["parts"][0]["text"] == "acme-0"
        # globex writes to its own "live": nothing of it reaches acme's stream
        assert (await server.say("globex", "live", "globex-0")).status == 201
        assert (await server.say("acme", "live", "acme-1")).status == 201
        second = await next_message()
        assert second["message"]["parts"][0]["text"] == "acme-1"
        assert second["seq"] == 2 and second["version"] == 2
    assert all(f["type"] in ("message", "context", "ping") for f in frames), frames


# -- the proxy ----------------------------------------------------------------

_CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "globex question"}]}
_RESPONSES = {"model": "gpt-test", "input": "globex question"}
_ANTHROPIC = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "globex question"}],
}
# every proxy route that stores turns: (path form, header form, body, extra headers)
PROXY_CALLS = [
    ("/v1/contexts/{id}/openai/chat/completions", "/v1/chat/completions", _CHAT, {}),
    ("/v1/contexts/{id}/openai/responses", "/v1/responses", _RESPONSES, {}),
    (
        "/v1/contexts/{id}/anthropic/v1/messages",
        "/v1/messages",
        _ANTHROPIC,
        {"anthropic-version": "2023-06-01"},
    ),
]


# every proxy route that reads a context to count a request (stores nothing)
PROXY_COUNTS = [
    (
        "/v1/contexts/{id}/openai/responses/input_tokens",
        "/v1/responses/input_tokens",
        _RESPONSES,
        {},
    ),
    (
        "/v1/contexts/{id}/anthropic/v1/messages/count_tokens",
        "/v1/messages/count_tokens",
        {k: v for k, v in _ANTHROPIC.items() if k != "max_tokens"},
        {"anthropic-version": "2023-06-01"},
    ),
]


def test_proxy_calls_cover_every_proxy_post_route() -> None:
    posts = {path for method, path in _proxy_routes() if method == "POST"}
    as_is = {path for route in AS_IS if "POST" in route.methods for path in route.paths()}
    listed = {p for call in PROXY_CALLS + PROXY_COUNTS for p in call[:2]}
    assert posts - as_is == listed


def _provider_headers(extra: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {PROVIDER_KEY}", **extra}


async def test_proxy_never_reaches_another_tenants_context(server: Server) -> None:
    await server.put("acme", "secret")
    assert (await server.say("acme", "secret", "acme private history")).status == 201
    acme_before = (await server.call("GET", "/v1/contexts/secret", "acme")).json()
    for in_path, header_form, body, extra in PROXY_CALLS + PROXY_COUNTS:
        for path, headers in (
            (_concrete(in_path, "secret"), {}),
            (header_form, {"X-Fastpaca-Context": "secret"}),
        ):
            sent = {**_provider_headers(extra), **headers}
            reply = await server.call("POST", path, "globex", json=body, headers=sent)
            assert reply.status == 200, (path, reply.body)
            assert reply.headers["X-Fastpaca-Context"] == "secret"  # the public id
            assert not _leaks(reply)
            upstream = server.fake.last
            assert "acme private" not in upstream.raw_body.decode()
            assert "globex question" in upstream.raw_body.decode()
            assert upstream.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
            assert "x-fastpaca-key" not in upstream.headers
    # acme's context is untouched; globex got one of its own, with its turns
    assert (await server.call("GET", "/v1/contexts/secret", "acme")).json() == acme_before
    assert await server.texts("acme", "secret") == ["acme private history"]
    globex_texts = await server.texts("globex", "secret")
    assert globex_texts.count("globex question") >= 1 and len(globex_texts) >= 6
    assert "acme private history" not in globex_texts


async def test_internal_ids_cannot_be_named_from_outside(server: Server) -> None:
    """``tenant/id`` is not a public id: no tenant (the default one included) can
    reach another's context by spelling its internal id."""
    await server.put("acme", "secret")
    assert (await server.say("acme", "secret", "acme private history")).status == 201
    for intruder in ("default", "globex", "acme"):
        for spelled in ("acme%2Fsecret", "acme%2fsecret"):
            reply = await server.call("GET", f"/v1/contexts/{spelled}/messages", intruder)
            assert reply.status in (400, 404), reply.body
            assert b"acme private" not in reply.body
        for _, header_form, body, extra in PROXY_CALLS + PROXY_COUNTS:
            reply = await server.call(
                "POST",
                header_form,
                intruder,
                json=body,
                headers={**_provider_headers(extra), "X-Fastpaca-Context": "acme/secret"},
            )
            assert reply.status == 400, reply.body
    assert await server.texts("acme", "secret") == ["acme private history"]


async def test_proxy_consumes_a_tenant_key_sent_as_bearer(server: Server) -> None:
    """A tenant key in ``Authorization`` authenticates and is never forwarded."""
    reply = await server.call(
        "POST",
        "/v1/contexts/k/openai/chat/completions",
        None,
        json=_CHAT,
        headers={"Authorization": f"Bearer {GLOBEX_KEY}"},
    )
    assert reply.status == 401  # the fake wants its provider key, which was not sent
    upstream = server.fake.last
    assert "authorization" not in upstream.headers
    assert await server.texts("globex", "k") == []  # a failed call stores nothing


# -- the stores: list_contexts by tenant ------------------------------------------


async def test_every_store_lists_by_tenant(store: Store) -> None:
    engine = Engine(store)
    # names that sort right next to "acme/": a prefix match must not take them
    ids = ["plain", "acme.x/one", "acme-/one", "acme/one", "acme/two", "acme0/one", "acmex/one"]
    for cid in ids:
        await engine.put_context(cid)

    async def listed(tenant: str | None) -> list[str]:
        out: list[str] = []
        cursor: str | None = None
        while True:
            page = await engine.list_contexts(2, cursor, tenant=tenant)
            out.extend(c.id for c in page.contexts)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    assert sorted(await listed("acme")) == ["acme/one", "acme/two"]
    assert sorted(await listed("acme.x")) == ["acme.x/one"]
    assert sorted(await listed("acme0")) == ["acme0/one"]
    assert await listed("nobody") == []
    assert await listed("") == ["plain"]
    assert sorted(await listed(None)) == sorted(ids)


async def test_postgres_lists_a_tenant_by_an_index_range(pg_url: str) -> None:
    """The tenant condition is a range the byte-order id index serves (no scan)."""
    import asyncpg

    async with open_store(pg_url) as opened:
        engine = Engine(opened)
        await engine.put_context("acme/one")
        dsn, schema = pg_url.rsplit("schema=", 1)
        conn = await asyncpg.connect(dsn[:-1])  # without "?" / "&"
        try:
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute("SET enable_seqscan = off")
            plan = await conn.fetch(
                "EXPLAIN SELECT id FROM contexts "
                'WHERE id COLLATE "C" >= $1 AND id COLLATE "C" < $2 '
                "ORDER BY updated_at DESC, id DESC LIMIT 3",
                "acme/",
                "acme0",
            )
        finally:
            await conn.close()
        text = "\n".join(row[0] for row in plan)
        assert "contexts_by_id_bytes" in text, text
        assert [c.id for c in (await engine.list_contexts(tenant="acme")).contexts] == ["acme/one"]


# -- key configuration ------------------------------------------------------------------


def test_keys_from_env_and_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# tenant key\nacme  k-acme-2   # rotated\n\ninitech k-initech\n")
    settings = Settings.load(
        {
            "FASTPACA_API_KEY": "k-default",
            "FASTPACA_API_KEYS": "acme:k-acme-1, globex:k:with:colons",
            "FASTPACA_API_KEYS_FILE": str(keys),
        }
    )
    assert "k-acme" not in repr(settings)  # keys stay out of logs
    tenants = Tenants.from_settings(settings)
    assert tenants.auth_required
    assert tenants.resolve("k-default") == DEFAULT_TENANT
    assert tenants.resolve("k-acme-1") == tenants.resolve("k-acme-2") == "acme"
    assert tenants.resolve("k:with:colons") == "globex"
    assert tenants.resolve("k-initech") == "initech"
    assert tenants.resolve("k-acme") is None and tenants.resolve("") is None
    assert tenants.names() == {DEFAULT_TENANT, "acme", "globex", "initech"}
    assert not Tenants.from_settings(Settings()).auth_required


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"api_keys": "acme"}, "api_keys"),
        ({"api_keys": "bad/name:k"}, "api_keys"),
        ({"api_keys": "acme:"}, "api_keys"),
        ({"api_keys": "acme:k1,globex:k1"}, "api_keys"),  # one key, two tenants
        ({"api_key": "k1", "api_keys": "acme:k1"}, "api_keys"),
        ({"api_keys_file": "/nonexistent/keys"}, "api_keys_file"),
    ],
)
def test_bad_key_configuration_stops_the_server(
    tmp_path: Path, options: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        create_app(Settings(store=f"sqlite:///{tmp_path / 'k.db'}", **options))
    assert info.value.field == field


def test_bad_key_file_lines_are_named(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("acme k1\nglobex\n")
    with pytest.raises(ValidationError) as info:
        Tenants.from_settings(Settings(api_keys_file=str(keys)))
    assert "line 2" in str(info.value)
