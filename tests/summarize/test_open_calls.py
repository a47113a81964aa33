"""Compacting over a tool call whose result has not arrived yet.

A manual compaction or a summariser's fold that covers such an *open* call
takes the call out of the window; its result, appended afterwards, then has
no call before it (under ``manual`` the window held a lone tool result,
which providers refuse; under the other policies the result was silently
dropped). A compaction covering an open call is refused (400) unless the
replacement carries the call on, and a fold ends before it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from loopback import serve_app

from fastpaca_core import Engine
from fastpaca_core.errors import ValidationError
from fastpaca_core.folding import plan_fold
from fastpaca_core.http import create_app
from fastpaca_core.settings import Settings
from fastpaca_core.summarizer import Summarizer
from fastpaca_core.toolcalls import tool_refs

from .support import SUMMARY_TEXT, assert_guarantees, call, policy, result, text

SUMMARY = text("system", "Summary: the user asked for the weather.")
POLICIES = [
    {"strategy": "manual"},
    {"strategy": "last_n", "config": {}},
    {"strategy": "skip_parts", "config": {}},
]


def sized(message: dict[str, Any], tokens: int = 20) -> dict[str, Any]:
    return {**message, "token_count": tokens}


async def pairs(engine: Engine, cid: str) -> tuple[list[str], list[str]]:
    """The window's calls and results, in order; every result after its call."""
    window = await engine.window(cid)
    calls: list[str] = []
    results: list[str] = []
    for message in window.messages:
        made, answered = tool_refs(message)
        assert answered <= set(calls), f"a result without its call: {window.segments}"
        calls += sorted(made)
        results += sorted(answered)
    return calls, results


@pytest.mark.parametrize("spec", POLICIES, ids=lambda spec: spec["strategy"])
async def test_compacting_the_whole_window_over_an_open_call_is_refused(
    engine: Engine, spec: dict[str, Any]
) -> None:
    await engine.put_context("c", policy=spec)
    await engine.append_batch("c", [text("user", "weather?"), call("c1")])
    before = await engine.get_context("c")
    with pytest.raises(ValidationError) as info:
        await engine.compact("c", [SUMMARY])
    assert info.value.field == "replacement"
    assert "'c1' at seq 2" in info.value.reason and "no result yet" in info.value.reason
    assert "up_to_seq 1" in info.value.reason
    assert (await engine.get_context("c")).version == before.version
    # the result comes: the call and its result are in the window together
    await engine.append("c", result("c1"))
    assert await pairs(engine, "c") == (["c1"], ["c1"])
    # now that it is answered, the pair may be compacted away whole
    await engine.compact("c", [SUMMARY])
    window = await engine.window("c")
    assert window.segments == [{"type": "summary", "from_seq": 1, "to_seq": 3}]
    # a replacement may cover an open call when it carries the call on itself
    await engine.append("c", call("c2"))
    await engine.compact("c", [SUMMARY, call("c2")])
    await engine.append("c", result("c2"))
    assert await pairs(engine, "c") == (["c2"], ["c2"])


@pytest.mark.parametrize("spec", POLICIES, ids=lambda spec: spec["strategy"])
async def test_compacting_up_to_an_open_call_is_refused(
    engine: Engine, spec: dict[str, Any]
) -> None:
    await engine.put_context("c", policy=spec)
    await engine.append_batch("c", [text("user", "weather?"), call("c1")])
    before = await engine.get_context("c")
    with pytest.raises(ValidationError) as info:
        await engine.compact("c", [SUMMARY], up_to_seq=2)
    assert info.value.field == "up_to_seq"
    assert "'c1' at seq 2" in info.value.reason
    assert (await engine.get_context("c")).version == before.version
    # up to the seq before it is fine: the call stays live and meets its result
    await engine.compact("c", [SUMMARY], up_to_seq=1)
    await engine.append("c", result("c1"))
    assert await pairs(engine, "c") == (["c1"], ["c1"])
    window = await engine.window("c")
    assert window.segments == [
        {"type": "summary", "from_seq": 1, "to_seq": 1},
        {"type": "live", "from_seq": 2, "to_seq": 3},
    ]


async def test_over_http_the_refusal_is_a_400_naming_the_call(tmp_path: Path) -> None:
    app = create_app(Settings(store=f"sqlite:///{tmp_path / 'open.db'}", port=0))
    runner, port = await serve_app(app)
    base = f"http://127.0.0.1:{port}/v1/contexts/c"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.put(base, json={"policy": {"strategy": "manual"}}) as reply:
                assert reply.status == 200
            for message in (text("user", "weather?"), call("c1")):
                async with http.post(f"{base}/messages", json={"message": message}) as reply:
                    assert reply.status == 201
            for extra in ({}, {"up_to_seq": 2}):
                body = {"replacement": [SUMMARY], **extra}
                async with http.post(f"{base}/compact", json=body) as reply:
                    assert reply.status == 400
                    error = await reply.json()
                field = "up_to_seq" if extra else "replacement"
                assert error["error"] == "invalid_request"
                assert error["message"].startswith(f"{field}: would replace the tool call 'c1'")
            async with http.post(f"{base}/messages", json={"message": result("c1")}) as reply:
                assert reply.status == 201
            async with http.get(f"{base}/context", params={"format": "openai"}) as reply:
                window = await reply.json()
    finally:
        await runner.cleanup()
    roles = [m["role"] for m in window["messages"]]
    assert roles == ["user", "assistant", "tool"]
    assert window["messages"][1]["tool_calls"][0]["id"] == "c1"
    assert window["messages"][2]["tool_call_id"] == "c1"


def waiting_conversation() -> list[dict[str, Any]]:
    """A system message, six turns, a call still waiting for its result (seq 8),
    and two newer messages."""
    log = [sized(text("system", "rules"))]
    log += [sized(text("user" if i % 2 == 0 else "assistant", f"message {i}")) for i in range(2, 8)]
    log += [sized(call("c1")), sized(text("assistant", "looking it up")), sized(text("user", "ok"))]
    return log


async def test_a_fold_ends_before_an_open_call(engine: Engine) -> None:
    await engine.put_context("c", token_budget=10_000, policy=policy(keep_last=2))
    await engine.append_batch("c", waiting_conversation())
    ctx, rows = await engine.store.read_window("c")
    assert ctx is not None
    plan = await plan_fold(
        ctx, rows, keep_last=2, max_tokens=10_000, read_log=partial(engine.store.read_messages, "c")
    )
    assert plan is not None
    # keep_last 2 would fold up to seq 8, the call: the fold ends before it
    assert (plan.cover_from, plan.up_to_seq) == (2, 7)
    record = await engine.apply_summary(
        plan, SUMMARY_TEXT, provider="openai", model="gpt-test", prompt_sha256="0" * 64
    )
    assert record is not None and record.to_seq == 7
    await engine.append("c", sized(result("c1")))
    assert await pairs(engine, "c") == (["c1"], ["c1"])
    window = await engine.window("c")
    assert window.segments == [
        {"type": "live", "from_seq": 1, "to_seq": 1},
        {"type": "summary", "from_seq": 2, "to_seq": 7},
        {"type": "live", "from_seq": 8, "to_seq": 11},
    ]
    await assert_guarantees(engine, "c")


async def test_the_summariser_leaves_a_waiting_call_live(
    engine: Engine, summarizer: Summarizer
) -> None:
    """End to end: the background summariser (real SDK, fake upstream) folds a
    window over its trigger while a call waits; the result arrives after."""
    await engine.put_context("c", token_budget=300, trigger_ratio=0.5, policy=policy(keep_last=2))
    await engine.append_batch("c", waiting_conversation())  # 220 tokens: over the trigger
    await summarizer.idle()
    page = await engine.list_summaries("c")
    assert [(r.from_seq, r.to_seq) for r in page.summaries] == [(2, 7)]
    await engine.append("c", sized(result("c1")))
    await summarizer.idle()
    assert await pairs(engine, "c") == (["c1"], ["c1"])
    await assert_guarantees(engine, "c")
