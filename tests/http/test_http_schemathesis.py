"""schemathesis against our whole OpenAPI document: no 5xx, every response as documented.

The document is the canonical API's plus the proxy's routes (``proxy_openapi``),
and the server is the one ``fastpaca serve`` runs: the API with its proxy,
whose upstream is the fake upstream, so proxied calls reach a real server.
Every error response has its JSON error shape: ``{"error", "message"}`` on the
canonical routes, the provider's on the proxy's (whoever refuses the request).

schemathesis calls the server with blocking ``requests``, so the server runs on
an event loop of its own in a background thread. Most generated cases are
pointed at a few contexts that exist (with messages), so the success paths
are exercised as well as the 404s.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from loopback import serve_app
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fastpaca_core.http import ENGINE, create_app
from fastpaca_core.http.openapi import openapi_document
from fastpaca_core.jsonutil import loads
from fastpaca_core.settings import Settings
from fastpaca_proxy import install_proxy
from fastpaca_proxy.fake_upstream import FakeUpstream
from fastpaca_proxy.openapi import proxy_openapi

KNOWN = ("st-a", "st-b", "st-c")
PROXY_PATHS = frozenset(proxy_openapi()["paths"])

schema = schemathesis.openapi.from_dict(openapi_document(extra=proxy_openapi()))
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=25
)
schema = schema.exclude(path="/v1/contexts/{id}/stream")


async def _seed(app: web.Application) -> None:
    engine = app[ENGINE]
    for cid in KNOWN:
        await engine.put_context(cid, token_budget=200)
        await engine.append_batch(
            cid,
            [{"role": "user", "parts": [{"type": "text", "text": f"hello {i}"}]} for i in range(3)],
        )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream().in_thread() as running:
        yield running


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[str]:
    db: Path = tmp_path_factory.mktemp("schemathesis") / "st.db"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)  # type: ignore[arg-type]

    async def start() -> tuple[web.AppRunner, int]:
        settings = Settings(
            store=f"sqlite:///{db}",
            port=0,
            openai_base_url=fake.openai_base_url,
            anthropic_base_url=fake.base_url,
        )
        app = install_proxy(create_app(settings))
        runner, port = await serve_app(app)
        await _seed(app)
        return runner, port

    runner, port = run(start())  # type: ignore[misc]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        run(runner.cleanup())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@schemathesis.check
def json_error_shape(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Every error is JSON in its route's error shape."""
    if response.status_code < 400:
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/json")
    body = loads(response.content)
    path = case.operation.path
    # on a proxy path, whoever refused the request (router, auth, limits, the
    # proxy itself), the error is in the provider's shape
    if path not in PROXY_PATHS:
        assert isinstance(body, dict) and set(body) == {"error", "message"}, body
        assert isinstance(body["error"], str) and isinstance(body["message"], str), body
    elif path.endswith("/messages"):  # Anthropic
        assert body.get("type") == "error", body
        assert isinstance(body["error"]["type"], str), body
        assert isinstance(body["error"]["message"], str), body
    else:  # OpenAI
        assert isinstance(body["error"], dict), body
        assert isinstance(body["error"]["message"], str), body
        assert isinstance(body["error"]["type"], str), body
    return True


@schema.parametrize()
@settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,
)
def test_api_matches_its_openapi_document(case: schemathesis.Case, base_url: str) -> None:
    params = case.path_parameters
    if params and "id" in params:
        pick = zlib.crc32(repr((case.query, case.body)).encode()) % (len(KNOWN) + 1)
        if pick < len(KNOWN) and case.operation.method.upper() != "DELETE":
            params["id"] = KNOWN[pick]
    case.call_and_validate(
        base_url=base_url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            json_error_shape,
        ],
        timeout=10,
    )


def test_every_route_of_the_document_was_exercised(fake: FakeUpstream) -> None:
    """Runs after the cases above: the proxy's calls reached the fake upstream."""
    operations = {(r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations()}
    assert ("POST", "/v1/contexts/{id}/openai/chat/completions") in operations
    assert len(operations) == 43  # 44 in the document; the websocket is tested elsewhere
    reached = {request.path for request in fake.requests}
    assert {"/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/models"} <= reached
    counts = {"/v1/messages/count_tokens", "/v1/responses/input_tokens", "/v1/embeddings"}
    assert counts <= reached


def test_the_served_document_lists_the_proxy_routes(base_url: str) -> None:
    served = httpx.get(base_url + "/openapi.json").json()
    assert set(served["paths"]) == set(schema.raw_schema["paths"])
    assert PROXY_PATHS <= set(served["paths"])
