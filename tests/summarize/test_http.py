"""Summaries over the HTTP API and the proxy: the whole stack, the fake upstream behind it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
from proxy.support import OPENAI_MODEL, Stack, run_stack

from fastpaca_core.client import Client
from fastpaca_core.http.openapi import openapi_document
from fastpaca_proxy.fake_upstream import ErrorReply, Reply

from .support import SUMMARY_TEXT, assert_coverage, policy, turn

SETTINGS: dict[str, Any] = {
    "anthropic_api_key": "sk-server",
    "summarizer_retry_initial": 0.01,
    "summarizer_retry_max": 0.05,
    "summarizer_lease_ttl": 5.0,
}
SUMMARIZE = policy(provider="anthropic", model="claude-test", keep_last=4)


def settle(stack: Stack, cid: str, timeout: float = 15.0) -> dict[str, Any]:
    """The window once the summariser has brought it back under the trigger."""
    deadline = time.monotonic() + timeout
    while True:
        window = stack.window(cid)
        if not window["needs_compaction"] or time.monotonic() > deadline:
            return window
        time.sleep(0.02)


def summaries(stack: Stack, cid: str, **params: Any) -> dict[str, Any]:
    reply = stack.api.get(f"/v1/contexts/{cid}/summaries", params=params)
    reply.raise_for_status()
    page: dict[str, Any] = reply.json()
    return page


def test_a_proxied_conversation_is_summarised_under_budget(tmp_path: Path) -> None:
    with run_stack(f"sqlite:///{tmp_path / 'talk.db'}", **SETTINGS) as stack:
        stack.fake.script(*[Reply(text=SUMMARY_TEXT)] * 100, protocol="anthropic")
        body = {"token_budget": 700, "trigger_ratio": 0.6, "policy": SUMMARIZE}
        stack.api.put("/v1/contexts/talk", json=body).raise_for_status()
        sdk = stack.track(
            openai.OpenAI(base_url=stack.openai_url("talk"), api_key="sk", max_retries=0)
        )
        for i in range(16):
            question = f"question {i}: " + " ".join(f"topic{i}-{j}" for j in range(20))
            sdk.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": question}]
            )
            window = settle(stack, "talk")
            assert window["used_tokens"] <= 700 and not window["needs_compaction"]
        last_seq = stack.api.get("/v1/contexts/talk").json()["last_seq"]
        page = summaries(stack, "talk")
        asked = stack.fake.requests_for("anthropic")
        sent = stack.fake.requests_for("openai_chat")[-1].json["messages"]
        first = summaries(stack, "talk", limit=1)
        second = summaries(stack, "talk", limit=1, cursor=first["next_cursor"])
        missing = stack.api.get("/v1/contexts/nope/summaries")
        bad = stack.api.get("/v1/contexts/talk/summaries", params={"cursor": "not-ours"})
        with Client(stack.base) as client:  # the Python client reads the same pages
            via_client = client.context("talk").summaries()
            client_first = client.context("talk").summaries(limit=1)
            client_second = client.context("talk").summaries(
                limit=1, cursor=client_first.next_cursor
            )
    assert last_seq == 32
    assert_coverage(window["segments"], last_seq)
    assert window["segments"][0]["type"] == "summary" and window["segments"][0]["from_seq"] == 1
    records = page["summaries"]
    assert len(records) >= 2 and page["next_cursor"] is None and len(asked) == len(records)
    newest = records[0]
    assert newest["from_seq"] == 1 and newest["to_seq"] == window["segments"][0]["to_seq"]
    assert (newest["provider"], newest["model"]) == ("anthropic", "claude-test")
    assert len(newest["prompt_sha256"]) == 64 and newest["token_count"] > 0
    assert newest["message"]["role"] == "system"
    assert SUMMARY_TEXT in newest["message"]["parts"][0]["text"]
    assert window["messages"][0]["parts"] == newest["message"]["parts"]
    assert window["messages"][0]["seq"] is None
    assert asked[-1].headers.get("x-api-key") == "sk-server" or "sk-server" in asked[
        -1
    ].headers.get("authorization", "")
    # the model behind the proxy got the summary as a system message
    assert sent[0]["role"] == "system" and SUMMARY_TEXT in sent[0]["content"]
    assert [first["summaries"][0]["version"], second["summaries"][0]["version"]] == [
        r["version"] for r in records[:2]
    ]
    assert via_client.summaries == records and via_client.next_cursor is None
    assert client_first.summaries == records[:1] and client_second.summaries == records[1:2]
    assert missing.status_code == 404 and missing.json()["error"] == "context_not_found"
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


def test_appends_keep_working_while_the_summariser_fails(tmp_path: Path) -> None:
    slow = {**SETTINGS, "summarizer_retry_initial": 0.5, "summarizer_retry_max": 2.0}
    with run_stack(f"sqlite:///{tmp_path / 'fail.db'}", **slow) as stack:
        stack.fake.script(*[ErrorReply(500)] * 3, protocol="anthropic")
        stack.fake.script(*[Reply(text=SUMMARY_TEXT)] * 20, protocol="anthropic")
        body = {
            "token_budget": 600,
            "trigger_ratio": 0.5,
            "policy": policy(provider="anthropic", model="claude-test", keep_last=3),
        }
        stack.api.put("/v1/contexts/f", json=body).raise_for_status()
        i, deadline = 0, time.monotonic() + 30  # the first request imports the SDK
        while not stack.fake.requests_for("anthropic"):
            reply = stack.api.post("/v1/contexts/f/messages", json={"message": turn(i)})
            assert reply.status_code == 201
            i += 1
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for j in range(i, i + 20):  # the summariser is failing and backing off meanwhile
            reply = stack.api.post("/v1/contexts/f/messages", json={"message": turn(j)})
            assert reply.status_code == 201
            assert stack.window("f")["used_tokens"] <= 600
        during = summaries(stack, "f")["summaries"]
        deadline = time.monotonic() + 20
        while not summaries(stack, "f")["summaries"] and time.monotonic() < deadline:
            time.sleep(0.05)
        after = summaries(stack, "f")["summaries"]
        window = stack.window("f")
        statuses = [r.status for r in stack.fake.requests_for("anthropic")]
    assert during == [] and len(after) == 1
    assert statuses[:4] == [500, 500, 500, 200]
    assert window["used_tokens"] <= 600
    assert window["segments"][0]["type"] == "summary"


def test_the_policy_over_http(tmp_path: Path) -> None:
    with run_stack(f"sqlite:///{tmp_path / 'p.db'}") as stack:
        bad = stack.api.put("/v1/contexts/p", json={"policy": {"strategy": "summarize"}})
        good = stack.api.put("/v1/contexts/p", json={"policy": SUMMARIZE})
        empty = summaries(stack, "p")
    assert bad.status_code == 400 and "policy.config.model" in bad.json()["message"]
    assert good.json()["policy"]["config"]["keep_last"] == 4
    assert empty == {"summaries": [], "next_cursor": None}
    paths = openapi_document()["paths"]
    assert "get" in paths["/v1/contexts/{id}/summaries"]
