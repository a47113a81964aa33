"""JSON nesting: a value as deep as is accepted comes back through every answer
that carries it; one level deeper is refused where it is written, and nothing
changes (orjson reads 1,024 levels but writes 254, and answers wrap a stored
value in a few levels more)."""

from __future__ import annotations

from typing import Any

from http_support import Api

from fastpaca_core.jsonutil import INPUT_DEPTH, loads


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


READS = [
    "/v1/contexts/deep",
    "/v1/contexts",
    "/v1/contexts/deep/messages",
    "/v1/contexts/deep/tail",
    "/v1/contexts/deep/context",
    "/v1/contexts/deep/context?format=openai",
    "/v1/contexts/deep/context?format=anthropic",
]


def message(levels: int) -> dict[str, Any]:
    """Parts and metadata each ``levels`` deep (the parts list and a part are two)."""
    return {
        "role": "user",
        "parts": [{"type": "data-x", "data": nested(levels - 2)}],
        "metadata": {"a": nested(levels - 1)},
    }


async def test_values_as_deep_as_accepted_are_answered_everywhere(api: Api) -> None:
    fits = nested(INPUT_DEPTH - 1)  # inside one object: INPUT_DEPTH levels in all
    created = await api.put(
        "/v1/contexts/deep",
        json={"metadata": {"a": fits}, "policy": {"strategy": "last_n", "config": {"x": fits}}},
    )
    assert created.status == 200, created.body
    appended = await api.post("/v1/contexts/deep/messages", json={"message": message(INPUT_DEPTH)})
    assert appended.status == 201, appended.body
    before = {}
    for path in READS:
        reply = await api.get(path)
        assert reply.status == 200, (path, reply.body[:200])
        before[path] = reply.body
    deeper = nested(INPUT_DEPTH)
    refused = [
        ("PUT", "/v1/contexts/deep", {"metadata": {"a": deeper}}, "metadata"),
        (
            "PUT",
            "/v1/contexts/deep",
            {"policy": {"strategy": "manual", "config": {"x": deeper}}},
            "policy.config",
        ),
        ("PATCH", "/v1/contexts/deep/metadata", {"metadata": {"a": deeper}}, "metadata"),
        (
            "POST",
            "/v1/contexts/deep/messages",
            {"message": message(INPUT_DEPTH + 1)},
            "message.parts",
        ),
        ("PUT", "/v1/contexts/deeper", {"metadata": {"a": deeper}}, "metadata"),
    ]
    for method, path, body, field in refused:
        reply = await api.request(method, path, json=body)
        assert reply.status == 400, (method, path, reply.body[:200])
        error = loads(reply.body)
        assert error["error"] == "invalid_request" and field in error["message"], error
    for path in READS:  # nothing changed, and all of it still answers
        reply = await api.get(path)
        assert (reply.status, reply.body) == (200, before[path]), path
    assert (await api.get("/v1/contexts/deeper")).status == 404
