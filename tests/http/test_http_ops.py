"""Operations and transport: health, metrics, OpenAPI, auth, body limits, routing errors, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import aiohttp
import pytest
from http_support import Api, Serve, text_message

from fastpaca_core.errors import StoreUnavailable
from fastpaca_core.http import METRICS


async def test_health_live_and_ready(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    live = await api.get("/health/live")
    assert live.status == 200 and live.json() == {"status": "ok"}
    ready = await api.get("/health/ready")
    assert ready.status == 200 and ready.json() == {"status": "ok"}

    async def down() -> None:
        raise StoreUnavailable("the database is gone")

    monkeypatch.setattr(api.engine.store, "ping", down)
    not_ready = await api.get("/health/ready")
    assert not_ready.status == 503
    assert not_ready.json()["error"] == "store_unavailable"
    assert (await api.get("/health/live")).status == 200


async def test_store_unavailable_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def down(context_id: str) -> None:
        raise StoreUnavailable("the database is gone")

    monkeypatch.setattr(api.engine.store, "get_context", down)
    reply = await api.get("/v1/contexts/any")
    assert reply.status == 503
    assert reply.json()["error"] == "store_unavailable"


async def test_unexpected_exception_is_a_json_500(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(context_id: str) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.engine.store, "get_context", broken)
    with caplog.at_level(logging.ERROR, "fastpaca.http"):
        reply = await api.get("/v1/contexts/any")
    assert reply.status == 500
    assert reply.json() == {"error": "internal_error", "message": "Internal server error"}
    assert b"secret" not in reply.body
    assert any("RuntimeError" in (r.exc_text or "") for r in caplog.records)


async def test_metrics(api: Api, cid: str) -> None:
    await api.create(cid, token_budget=30, policy={"strategy": "last_n", "config": {"limit": 2}})
    for i in range(4):
        await api.say(cid, f"m{i}", token_count=10)
    await api.post(f"/v1/contexts/{cid}/compact", json={"replacement": []})
    await api.get("/v1/contexts/ghost")
    reply = await api.get("/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    text = reply.body.decode()
    assert "fastpaca_messages_appended_total 4.0" in text
    assert "fastpaca_message_tokens_count 4.0" in text
    compactions = re.search(r"^fastpaca_compactions_total (\S+)$", text, re.M)
    assert compactions is not None and float(compactions.group(1)) >= 2  # policy + manual
    assert (
        'fastpaca_http_request_duration_seconds_count{method="GET",'
        'route="/v1/contexts/{id}",status="404"} 1.0' in text
    )
    assert 'fastpaca_store_operation_duration_seconds_count{operation="run"}' in text
    assert "fastpaca_websockets_open 0.0" in text


async def test_made_up_methods_share_one_metric_label(api: Api) -> None:
    """The client names the method: the ones the API does not use (WebDAV's, say,
    which the HTTP parser accepts) count as one label value, not one each."""
    for method in ("PROPFIND", "MKCOL", "LOCK", "PURGE", "SEARCH"):
        reply = await api.request(method, "/v1/contexts/x")
        assert reply.status == 405, reply.body
        assert reply.json()["error"] == "method_not_allowed"
    text = (await api.get("/metrics")).body.decode()
    assert "PROPFIND" not in text and "PURGE" not in text
    assert (
        'fastpaca_http_request_duration_seconds_count{method="other",'
        'route="unmatched",status="405"} 5.0' in text
    )


async def test_openapi_describes_every_route(api: Api) -> None:
    reply = await api.get("/openapi.json")
    assert reply.status == 200
    doc = reply.json()
    assert doc["openapi"].startswith("3.")
    documented = {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    served = {
        (route.resource.canonical, route.method)
        for route in api.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert served == documented
    for name in ("Error", "Context", "Message", "Window", "AppendResult", "BatchAppendResult"):
        assert name in doc["components"]["schemas"]


async def test_api_key(serve: Serve, cid: str) -> None:
    api = await serve(api_key="s3cret")
    assert (await api.put(f"/v1/contexts/{cid}")).status == 401
    wrong = await api.get("/v1/contexts", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert wrong.json() == {"error": "unauthorized", "message": "Missing or invalid API key"}
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    basic = await api.get("/v1/contexts", headers={"Authorization": "Basic s3cret"})
    assert basic.status == 401
    assert (await api.get("/v1/nowhere")).status == 401
    for path in ("/health/live", "/health/ready"):
        assert (await api.get(path)).status == 200
    api.headers["Authorization"] = "Bearer s3cret"
    assert (await api.put(f"/v1/contexts/{cid}")).status == 200
    assert (await api.get("/v1/contexts")).status == 200
    api.headers.clear()
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await api.ws(f"/v1/contexts/{cid}/stream")
    assert info.value.status == 401


async def test_body_limit(serve: Serve, cid: str) -> None:
    api = await serve(max_body_bytes=2048)
    await api.create(cid)
    path = f"/v1/contexts/{cid}/messages"
    big = {"message": text_message("x" * 4096)}
    declared = await api.post(path, json=big)
    assert declared.status == 413
    assert declared.json()["error"] == "payload_too_large"

    async def chunks() -> object:
        for _ in range(8):
            yield b" " * 1024

    async with api.session.post(
        api.base + path, data=chunks(), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"] == "payload_too_large"
    assert (await api.post(path, json={"message": text_message("small")})).status == 201


async def test_routing_and_json_errors(api: Api, cid: str) -> None:
    unknown = await api.get("/v1/nothing/here")
    assert unknown.status == 404
    assert unknown.json() == {"error": "not_found", "message": "No such route"}
    wrong_method = await api.request("POST", f"/v1/contexts/{cid}")
    assert wrong_method.status == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
    assert "PUT" in wrong_method.headers["Allow"]
    await api.create(cid)
    path = f"/v1/contexts/{cid}/messages"
    for raw in (b"{bad", b'{"message": ', b"\xff\xfe", b"[1, 2"):
        reply = await api.post(path, data=raw)
        assert reply.status == 400
        assert reply.json()["error"] == "invalid_json"
    for raw in (b"[]", b'"text"', b"42", b"null"):
        reply = await api.post(path, data=raw)
        assert reply.status == 400
        assert reply.json()["error"] == "invalid_request"
    not_ws = await api.get(f"/v1/contexts/{cid}/stream")
    assert not_ws.status == 400 and not_ws.json()["error"] == "websocket_required"


async def test_access_log_is_one_json_line_without_contents(
    api: Api, cid: str, caplog: pytest.LogCaptureFixture
) -> None:
    from fastpaca_core.http.logs import JsonFormatter

    await api.create(cid)
    with caplog.at_level(logging.INFO, "fastpaca.access"):
        await api.say(cid, "top secret words")
        await api.get("/v1/nothing")
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "fastpaca.access"]
    assert len(lines) == 2
    append, missing = lines
    assert append["route"] == "/v1/contexts/{id}/messages"
    assert append["method"] == "POST" and append["status"] == 201
    assert append["context_id"] == cid and append["duration_ms"] >= 0
    assert missing["status"] == 404 and missing["route"] == "unmatched"
    assert "secret" not in json.dumps(lines)


async def test_metrics_registry_is_per_app(serve: Serve) -> None:
    first = await serve()
    second = await serve()
    assert first.app[METRICS].registry is not second.app[METRICS].registry


async def test_shutdown_finishes_in_flight_requests(
    api: Api, cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.create(cid)
    store = api.engine.store
    original = store.get_context
    started = asyncio.Event()

    async def slow(context_id: str) -> object:
        started.set()
        await asyncio.sleep(0.3)
        return await original(context_id)

    monkeypatch.setattr(store, "get_context", slow)
    request = asyncio.create_task(api.get(f"/v1/contexts/{cid}"))
    await started.wait()
    assert api.runner is not None
    await api.runner.cleanup()
    reply = await request
    assert reply.status == 200 and reply.json()["id"] == cid
