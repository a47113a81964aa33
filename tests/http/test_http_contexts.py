"""Contexts over HTTP: PUT / GET / DELETE / PATCH metadata / list."""

from __future__ import annotations

import pytest
from http_support import Api, Serve, text_message


async def test_put_creates_with_defaults(any_api: Api, cid: str) -> None:
    reply = await any_api.put(f"/v1/contexts/{cid}")
    assert reply.status == 200
    ctx = reply.json()
    assert ctx["id"] == cid
    assert ctx["token_budget"] == 8000
    assert ctx["trigger_ratio"] == 0.7
    assert ctx["policy"] == {"strategy": "last_n", "config": {"limit": 200}}
    assert ctx["metadata"] == {}
    assert ctx["status"] == "active"
    assert (ctx["version"], ctx["last_seq"]) == (0, 0)
    assert ctx["created_at"].endswith("Z") and ctx["updated_at"].endswith("Z")
    assert set(ctx) == {
        "id",
        "token_budget",
        "trigger_ratio",
        "policy",
        "metadata",
        "status",
        "version",
        "last_seq",
        "created_at",
        "updated_at",
    }


async def test_put_updates_only_given_fields_and_is_idempotent(any_api: Api, cid: str) -> None:
    await any_api.create(cid, token_budget=1000, metadata={"a": 1})
    again = await any_api.create(cid, token_budget=1000, metadata={"a": 1})
    assert again["token_budget"] == 1000
    updated = await any_api.create(cid, trigger_ratio=0.5)
    assert updated["token_budget"] == 1000
    assert updated["trigger_ratio"] == 0.5
    assert updated["metadata"] == {"a": 1}
    nulls = await any_api.create(cid, token_budget=None, policy=None)
    assert nulls["token_budget"] == 1000
    policy = {"strategy": "skip_parts", "config": {"limit": 10}}
    changed = await any_api.create(cid, policy=policy)
    assert changed["policy"]["strategy"] == "skip_parts"
    assert changed["policy"]["config"]["limit"] == 10
    got = await any_api.get(f"/v1/contexts/{cid}")
    assert got.status == 200 and got.json() == changed


@pytest.mark.parametrize(
    "body",
    [
        {"token_budget": 0},
        {"token_budget": "big"},
        {"trigger_ratio": 1.5},
        {"trigger_ratio": True},
        {"policy": {"strategy": "nope"}},
        {"policy": {"strategy": "last_n", "config": {"limit": 0}}},
        {"policy": "last_n"},
        {"metadata": [1, 2]},
    ],
)
async def test_put_rejects_invalid_fields(api: Api, cid: str, body: dict[str, object]) -> None:
    reply = await api.put(f"/v1/contexts/{cid}", json=body)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_request"


@pytest.mark.parametrize("bad", ["a b", "x" * 257, "caf%C3%A9", "semi;colon"])
async def test_invalid_context_id_is_400(api: Api, bad: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        reply = await api.request(method, f"/v1/contexts/{bad}")
        assert reply.status == 400, (method, bad)
        assert reply.json()["error"] == "invalid_request"


async def test_get_missing_is_404(api: Api) -> None:
    reply = await api.get("/v1/contexts/missing")
    assert reply.status == 404
    assert reply.json() == {"error": "context_not_found", "message": "Context 'missing' not found"}


async def test_delete_tombstones(any_api: Api, cid: str) -> None:
    # an id never created: 204 (API.md), and nothing is created by it
    assert (await any_api.delete(f"/v1/contexts/{cid}")).status == 204
    assert (await any_api.get(f"/v1/contexts/{cid}")).status == 404
    await any_api.create(cid)
    await any_api.say(cid, "hello")
    reply = await any_api.delete(f"/v1/contexts/{cid}")
    assert reply.status == 204 and reply.body == b""
    assert (await any_api.delete(f"/v1/contexts/{cid}")).status == 204
    ctx = (await any_api.get(f"/v1/contexts/{cid}")).json()
    assert ctx["status"] == "tombstoned"
    # history stays readable
    tail = await any_api.get(f"/v1/contexts/{cid}/tail")
    assert [m["seq"] for m in tail.json()["messages"]] == [1]
    assert (await any_api.get(f"/v1/contexts/{cid}/context")).status == 200
    # writes answer 409 context_tombstoned
    for path, body in [
        (f"/v1/contexts/{cid}/messages", {"message": text_message("late")}),
        (f"/v1/contexts/{cid}/compact", {"replacement": []}),
    ]:
        reply = await any_api.post(path, json=body)
        assert reply.status == 409
        assert reply.json()["error"] == "context_tombstoned"
    # settings stay settable: clients open a context with PUT before reading it
    reply = await any_api.put(f"/v1/contexts/{cid}", json={"token_budget": 5})
    assert reply.status == 200
    assert (reply.json()["status"], reply.json()["token_budget"]) == ("tombstoned", 5)
    assert (await any_api.put(f"/v1/contexts/{cid}", json={})).status == 200
    reply = await any_api.post(f"/v1/contexts/{cid}/messages", json={"message": text_message("x")})
    assert reply.status == 409  # and it still takes no messages


async def test_patch_metadata_merges(any_api: Api, cid: str) -> None:
    await any_api.create(cid, metadata={"a": 1, "b": {"x": 1}})
    reply = await any_api.patch(f"/v1/contexts/{cid}/metadata", json={"metadata": {"b": 2, "c": 3}})
    assert reply.status == 200
    assert reply.json()["metadata"] == {"a": 1, "b": 2, "c": 3}
    assert (await any_api.get(f"/v1/contexts/{cid}")).json()["metadata"]["c"] == 3


async def test_patch_metadata_errors(api: Api, cid: str) -> None:
    missing = await api.patch("/v1/contexts/nope/metadata", json={"metadata": {}})
    assert missing.status == 404
    await api.create(cid)
    for body in ({}, {"metadata": [1]}, {"metadata": "x"}):
        reply = await api.patch(f"/v1/contexts/{cid}/metadata", json=body)
        assert reply.status == 400, body


async def test_list_pages_with_cursor(any_api: Api) -> None:
    ids = [f"list-{i}" for i in range(5)]
    for cid in ids:
        await any_api.create(cid)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        reply = await any_api.get("/v1/contexts", params=params)
        assert reply.status == 200
        page = reply.json()
        assert len(page["contexts"]) <= 2
        seen.extend(c["id"] for c in page["contexts"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # most recently updated first
    assert pages == 3
    everything = (await any_api.get("/v1/contexts")).json()
    assert everything["next_cursor"] is None and len(everything["contexts"]) == 5


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "-1"}, {"limit": "x"}, {"limit": "1001"}, {"cursor": "garbage"}],
)
async def test_list_rejects_bad_params(api: Api, params: dict[str, str]) -> None:
    reply = await api.get("/v1/contexts", params=params)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_request"


async def test_page_size_cap_is_a_setting(serve: Serve) -> None:
    api = await serve(max_page_size=3)
    assert (await api.get("/v1/contexts", params={"limit": "3"})).status == 200
    assert (await api.get("/v1/contexts", params={"limit": "4"})).status == 400
