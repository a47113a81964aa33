"""The log over HTTP: append (single, batch, idempotent), tail, forward paging."""

from __future__ import annotations

import asyncio

import pytest
from http_support import Api, text_message


async def test_append_returns_201_seq_version_estimate(any_api: Api, cid: str) -> None:
    await any_api.create(cid)
    path = f"/v1/contexts/{cid}/messages"
    reply = await any_api.post(path, json={"message": text_message("hello there")})
    assert reply.status == 201
    first = reply.json()
    assert set(first) == {"seq", "version", "token_estimate"}
    assert (first["seq"], first["version"]) == (1, 1)
    assert first["token_estimate"] > 0
    given = await any_api.post(path, json={"message": text_message("x", token_count=42)})
    assert given.json() == {"seq": 2, "version": 2, "token_estimate": 42}


async def test_append_to_missing_context_is_404(api: Api) -> None:
    reply = await api.post("/v1/contexts/nope/messages", json={"message": text_message("hi")})
    assert reply.status == 404
    assert reply.json()["error"] == "context_not_found"


async def test_if_version_conflict_message_is_exact(any_api: Api, cid: str) -> None:
    await any_api.create(cid)
    for i in range(42):
        await any_api.say(cid, f"m{i}", token_count=1)
    path = f"/v1/contexts/{cid}/messages"
    reply = await any_api.post(path, json={"message": text_message("late"), "if_version": 41})
    assert reply.status == 409
    assert reply.json() == {
        "error": "conflict",
        "message": "Context version changed (expected 41, found 42)",
    }
    ok = await any_api.post(path, json={"message": text_message("now"), "if_version": 42})
    assert ok.status == 201 and ok.json()["version"] == 43


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": None},
        {"message": "hello"},
        {"message": {"parts": []}},
        {"message": {"role": "robot", "parts": []}},
        {"message": {"role": "user", "parts": "hi"}},
        {"message": {"role": "user", "parts": [{"text": "no type"}]}},
        {"message": {"role": "user", "parts": [], "token_count": -1}},
        {"message": {"role": "user", "parts": []}, "if_version": "3"},
        {"message": {"role": "user", "parts": []}, "if_version": -1},
        {"messages": []},
        {"messages": "x"},
        {"message": {"role": "user", "parts": []}, "messages": [{"role": "user", "parts": []}]},
        {"message": {"role": "user", "parts": []}, "idempotency_key": 5},
    ],
)
async def test_append_rejects_invalid_bodies(api: Api, cid: str, body: dict[str, object]) -> None:
    await api.create(cid)
    reply = await api.post(f"/v1/contexts/{cid}/messages", json=body)
    assert reply.status == 400, reply.body
    assert reply.json()["error"] == "invalid_request"


async def test_parts_round_trip_verbatim(api: Api, cid: str) -> None:
    await api.create(cid)
    parts = [
        {"type": "text", "text": "héllo", "providerMetadata": {"x": [1, 2.5, None]}},
        {"type": "data-weather", "data": {"deep": {"deeper": True}}},
        {"type": "step-start"},
    ]
    message = {"role": "assistant", "parts": parts, "metadata": {"k": "v"}}
    await api.post(f"/v1/contexts/{cid}/messages", json={"message": message})
    row = (await api.get(f"/v1/contexts/{cid}/tail")).json()["messages"][0]
    assert row["parts"] == parts and row["metadata"] == {"k": "v"}
    assert row["role"] == "assistant" and row["seq"] == 1
    assert row["inserted_at"].endswith("Z")


async def test_batch_append(any_api: Api, cid: str) -> None:
    await any_api.create(cid)
    await any_api.say(cid, "first")
    body = {"messages": [text_message("a"), text_message("b", token_count=7)]}
    reply = await any_api.post(f"/v1/contexts/{cid}/messages", json=body)
    assert reply.status == 201
    result = reply.json()
    assert result["version"] == 3
    assert [m["seq"] for m in result["messages"]] == [2, 3]
    assert result["messages"][1]["token_estimate"] == 7
    assert set(result["messages"][0]) == {"seq", "token_estimate"}


async def test_idempotency_key(any_api: Api, cid: str) -> None:
    await any_api.create(cid)
    path = f"/v1/contexts/{cid}/messages"
    headers = {"Idempotency-Key": "k-1"}
    body = {"message": text_message("once")}
    first = await any_api.post(path, json=body, headers=headers)
    again = await any_api.post(path, json=body, headers=headers)
    assert first.status == again.status == 201
    assert first.json() == again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    ctx = (await any_api.get(f"/v1/contexts/{cid}")).json()
    assert ctx["last_seq"] == 1
    other = await any_api.post(path, json={"message": text_message("other")}, headers=headers)
    assert other.status == 422
    assert other.json()["error"] == "idempotency_key_reused"
    # the key in the body works too, and must agree with the header
    in_body = await any_api.post(path, json={**body, "idempotency_key": "k-1"})
    assert in_body.json() == first.json()
    clash = await any_api.post(path, json={**body, "idempotency_key": "k-2"}, headers=headers)
    assert clash.status == 400
    too_long = await any_api.post(path, json=body, headers={"Idempotency-Key": "k" * 300})
    assert too_long.status == 400


async def test_concurrent_appends_get_gapless_seqs(api: Api, cid: str) -> None:
    await api.create(cid)
    results = await asyncio.gather(*(api.say(cid, f"m{i}") for i in range(20)))
    assert sorted(r["seq"] for r in results) == list(range(1, 21))


async def test_tail_pages_backwards(any_api: Api, cid: str) -> None:
    await any_api.create(cid, token_budget=100_000)
    for i in range(1, 8):
        await any_api.say(cid, f"m{i}", token_count=1)
    path = f"/v1/contexts/{cid}/tail"

    async def seqs(**params: int) -> list[int]:
        reply = await any_api.get(path, params={k: str(v) for k, v in params.items()})
        assert reply.status == 200
        return [m["seq"] for m in reply.json()["messages"]]

    assert await seqs() == [1, 2, 3, 4, 5, 6, 7]
    assert await seqs(limit=3) == [5, 6, 7]
    assert await seqs(offset=3, limit=3) == [2, 3, 4]
    assert await seqs(offset=6, limit=3) == [1]
    assert await seqs(offset=7, limit=3) == []
    assert await seqs(offset=100) == []


async def test_forward_paging(any_api: Api, cid: str) -> None:
    await any_api.create(cid)
    for i in range(5):
        await any_api.say(cid, f"m{i}", token_count=1)
    path = f"/v1/contexts/{cid}/messages"
    page = (await any_api.get(path, params={"after_seq": "1", "limit": "2"})).json()
    assert [m["seq"] for m in page["messages"]] == [2, 3]
    rest = (await any_api.get(path, params={"after_seq": "3"})).json()
    assert [m["seq"] for m in rest["messages"]] == [4, 5]
    assert (await any_api.get(path, params={"after_seq": "5"})).json() == {"messages": []}


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("tail", {"offset": "-1"}),
        ("tail", {"offset": "abc"}),
        ("tail", {"offset": "1.5"}),
        ("tail", {"limit": "0"}),
        ("tail", {"limit": "99999999999999999999999"}),
        ("tail", {"limit": "²"}),
        ("messages", {"after_seq": "-3"}),
        ("messages", {"limit": "ten"}),
        ("context", {"budget_tokens": "0"}),
        ("context", {"if_version": "v1"}),
        ("context", {"format": "gemini"}),
    ],
)
async def test_bad_query_params_are_400(
    any_api: Api, cid: str, route: str, params: dict[str, str]
) -> None:
    await any_api.create(cid)
    reply = await any_api.get(f"/v1/contexts/{cid}/{route}", params=params)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_request"


async def test_reads_of_missing_context_are_404(api: Api) -> None:
    for route in ("tail", "messages", "context"):
        reply = await api.get(f"/v1/contexts/ghost/{route}")
        assert reply.status == 404, route
        assert reply.json()["error"] == "context_not_found"


async def test_a_retry_with_its_keys_in_another_order_is_the_same_request(
    any_api: Api, cid: str
) -> None:
    """A client whose maps keep no order (Swift, Kotlin) retries with the same
    JSON in another key order: the first answer, not 422."""
    await any_api.create(cid)
    path = f"/v1/contexts/{cid}/messages"
    headers = {"Idempotency-Key": "k-order"}
    part = {"type": "text", "text": "hi"}
    first = {"role": "user", "parts": [part], "metadata": {"a": 1, "b": {"x": 1, "y": 2}}}
    again = {  # the same, every object's keys reversed (dicts keep their order)
        "metadata": {"b": {"y": 2, "x": 1}, "a": 1},
        "parts": [{"text": "hi", "type": "text"}],
        "role": "user",
    }
    one = await any_api.post(path, json={"message": first}, headers=headers)
    two = await any_api.post(path, json={"message": again}, headers=headers)
    assert one.status == two.status == 201, two.body
    assert two.json() == one.json()
    assert two.headers.get("Idempotent-Replayed") == "true"
    assert (await any_api.get(f"/v1/contexts/{cid}")).json()["last_seq"] == 1
    changed = {**again, "metadata": {"b": {"y": 3, "x": 1}, "a": 1}}
    assert (await any_api.post(path, json={"message": changed}, headers=headers)).status == 422
