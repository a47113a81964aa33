"""Every error response seen by the HTTP tests has exactly the JSON error shape.

The recording client (``http_support.Api``) keeps each response with a status
of 400 or more; this module runs last in ``tests/http`` (its name sorts last)
and also provokes one of every error itself, so it holds even when run alone.
"""

from __future__ import annotations

from http_support import ERRORS, Api, Serve, text_message

from fastpaca_core.jsonutil import loads

EXPECTED_CODES = {
    400: {"invalid_request", "invalid_json", "websocket_required"},
    401: {"unauthorized"},
    404: {"context_not_found", "not_found"},
    405: {"method_not_allowed"},
    409: {"conflict", "context_tombstoned"},
    413: {"payload_too_large"},
    415: {"unsupported_media_type"},
    422: {"idempotency_key_reused"},
    500: {"internal_error", "store_error"},
    503: {"store_unavailable", "too_many_streams", "shutting_down"},
}


async def provoke_every_error(serve: Serve) -> None:
    api: Api = await serve(api_key="k", max_body_bytes=1024)
    await api.get("/v1/contexts")  # 401
    api.headers["Authorization"] = "Bearer k"
    await api.put("/v1/contexts/a b")  # 400 invalid id
    await api.get("/v1/contexts/ghost")  # 404
    await api.get("/v1/no/such/route")  # 404 not_found
    await api.request("POST", "/v1/contexts/x")  # 405
    await api.create("e")
    path = "/v1/contexts/e/messages"
    await api.post(path, data=b"{nope")  # 400 invalid_json
    await api.post(path, data=b"{}", headers={"Content-Type": "text/plain"})  # 415
    await api.post(path, json={"message": text_message("x" * 2000)})  # 413
    await api.post(path, json={"message": text_message("a")}, headers={"Idempotency-Key": "i"})
    await api.post(path, json={"message": text_message("b")}, headers={"Idempotency-Key": "i"})
    await api.post(path, json={"message": text_message("c"), "if_version": 0})  # 409
    await api.get("/v1/contexts/e/stream")  # 400 websocket_required
    await api.delete("/v1/contexts/e")
    await api.post(path, json={"message": text_message("d")})  # 409 tombstoned


async def test_every_error_response_has_the_json_error_shape(serve: Serve) -> None:
    await provoke_every_error(serve)
    statuses = {e.status for e in ERRORS}
    assert {400, 401, 404, 405, 409, 413, 415, 422} <= statuses
    for error in ERRORS:
        where = f"{error.method} {error.path} -> {error.status}"
        assert error.content_type.startswith("application/json"), where
        body = loads(error.body)
        assert isinstance(body, dict) and set(body) == {"error", "message"}, where
        assert isinstance(body["error"], str) and body["error"], where
        assert isinstance(body["message"], str) and body["message"], where
        assert body["error"] in EXPECTED_CODES[error.status], where
