"""The LLM context over HTTP: GET …/context (budget, if_version, format) and compaction."""

from __future__ import annotations

from typing import Any

from http_support import Api, text_message


def tool_call(call_id: str, name: str = "weather") -> dict[str, Any]:
    return {
        "type": f"tool-{name}",
        "toolCallId": call_id,
        "state": "input-available",
        "input": {"city": "Oslo"},
    }


def tool_result(call_id: str, name: str = "weather") -> dict[str, Any]:
    return {"type": "tool-result", "toolCallId": call_id, "toolName": name, "output": "sunny"}


async def test_window_shape(any_api: Api, cid: str) -> None:
    await any_api.create(cid, token_budget=100)
    empty = (await any_api.get(f"/v1/contexts/{cid}/context")).json()
    assert empty == {
        "version": 0,
        "messages": [],
        "used_tokens": 0,
        "used_tokens_estimate": 0,
        "needs_compaction": False,
        "segments": [],
    }
    await any_api.say(cid, "a", token_count=30)
    await any_api.say(cid, "b", token_count=50)
    window = (await any_api.get(f"/v1/contexts/{cid}/context")).json()
    assert window["version"] == 2
    assert window["used_tokens"] == 80
    assert window["needs_compaction"] is True  # 80 > 100 * 0.7
    assert window["segments"] == [{"type": "live", "from_seq": 1, "to_seq": 2}]
    assert [m["seq"] for m in window["messages"]] == [1, 2]
    assert window["messages"][0]["parts"] == [{"type": "text", "text": "a"}]


async def test_budget_tokens_and_if_version(any_api: Api, cid: str) -> None:
    await any_api.create(cid, token_budget=10_000)
    for i in range(4):
        await any_api.say(cid, f"m{i}", token_count=10)
    path = f"/v1/contexts/{cid}/context"
    cut = (await any_api.get(path, params={"budget_tokens": "25"})).json()
    assert cut["used_tokens"] <= 25
    assert [m["seq"] for m in cut["messages"]] == [3, 4]
    ok = await any_api.get(path, params={"if_version": "4"})
    assert ok.status == 200
    stale = await any_api.get(path, params={"if_version": "3"})
    assert stale.status == 409
    assert stale.json() == {
        "error": "conflict",
        "message": "Context version changed (expected 3, found 4)",
    }


async def test_compact_replaces_window(any_api: Api, cid: str) -> None:
    await any_api.create(cid, policy={"strategy": "manual"})
    for i in range(4):
        await any_api.say(cid, f"m{i}", token_count=10)
    path = f"/v1/contexts/{cid}/compact"
    summary = text_message("summary of 1-4", role="system")
    reply = await any_api.post(path, json={"replacement": [summary], "if_version": 4})
    assert reply.status == 200 and reply.json() == {"version": 5}
    window = (await any_api.get(f"/v1/contexts/{cid}/context")).json()
    assert window["segments"] == [{"type": "summary", "from_seq": 1, "to_seq": 4}]
    assert window["messages"][0]["parts"] == summary["parts"]
    stale = await any_api.post(path, json={"replacement": [], "if_version": 4})
    assert stale.status == 409 and stale.json()["error"] == "conflict"
    # the log is untouched
    tail = (await any_api.get(f"/v1/contexts/{cid}/tail")).json()["messages"]
    assert [m["seq"] for m in tail] == [1, 2, 3, 4]


async def test_compact_up_to_seq_keeps_newer_messages(any_api: Api, cid: str) -> None:
    await any_api.create(cid, policy={"strategy": "manual"})
    for i in range(5):
        await any_api.say(cid, f"m{i}", token_count=10)
    path = f"/v1/contexts/{cid}/compact"
    summary = text_message("summary", role="system")
    reply = await any_api.post(path, json={"replacement": [summary], "up_to_seq": 3})
    assert reply.status == 200
    window = (await any_api.get(f"/v1/contexts/{cid}/context")).json()
    assert window["segments"] == [
        {"type": "summary", "from_seq": 1, "to_seq": 3},
        {"type": "live", "from_seq": 4, "to_seq": 5},
    ]
    beyond = await any_api.post(path, json={"replacement": [summary], "up_to_seq": 99})
    assert beyond.status == 400


async def test_compact_errors_and_idempotency(api: Api, cid: str) -> None:
    missing = await api.post("/v1/contexts/ghost/compact", json={"replacement": []})
    assert missing.status == 404
    await api.create(cid)
    await api.say(cid, "hi")
    path = f"/v1/contexts/{cid}/compact"
    for body in ({}, {"replacement": "x"}, {"replacement": [{"role": "nope", "parts": []}]}):
        assert (await api.post(path, json=body)).status == 400, body
    headers = {"Idempotency-Key": "compact-1"}
    body = {"replacement": [text_message("s", role="system")]}
    first = await api.post(path, json=body, headers=headers)
    again = await api.post(path, json=body, headers=headers)
    assert first.json() == again.json() == {"version": 2}
    reused = await api.post(path, json={"replacement": []}, headers=headers)
    assert reused.status == 422 and reused.json()["error"] == "idempotency_key_reused"


async def test_format_openai_and_anthropic(any_api: Api, cid: str) -> None:
    await any_api.create(cid)
    body = {
        "messages": [
            text_message("be brief", role="system"),
            text_message("weather?"),
            {"role": "assistant", "parts": [tool_call("c1")]},
            {"role": "tool", "parts": [tool_result("c1")]},
            text_message("It is sunny.", role="assistant"),
        ]
    }
    assert (await any_api.post(f"/v1/contexts/{cid}/messages", json=body)).status == 201
    path = f"/v1/contexts/{cid}/context"
    openai = (await any_api.get(path, params={"format": "openai"})).json()
    assert openai["format"] == "openai" and openai["version"] == 5
    assert openai["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
    ]
    anthropic = (await any_api.get(path, params={"format": "anthropic"})).json()
    assert anthropic["format"] == "anthropic"
    assert anthropic["system"] == "be brief"
    assert anthropic["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "c1", "name": "weather", "input": {"city": "Oslo"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "sunny"}],
        },
        {"role": "assistant", "content": "It is sunny."},
    ]
    assert anthropic["used_tokens"] == openai["used_tokens"]
    assert anthropic["segments"] == openai["segments"]
