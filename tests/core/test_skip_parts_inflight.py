"""``skip_parts`` leaves the turn in flight whole, on every backend.

docs/context-management.md: "The turn in flight ... is left whole, so an
agent loop never loses the tool result it is about to answer." An agent loop
runs one user request and then many call/result rounds; once ``last_n`` has
cut the request away, the window holds no user message at all, and the
policy once stripped every tool part then, the call just appended with them,
so the result that came next had no call and was dropped with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastpaca_core import Engine
from fastpaca_core.toolcalls import tool_refs

from .helpers import call, result, text


def skip_parts(limit: int) -> dict[str, Any]:
    return {"strategy": "skip_parts", "config": {"limit": limit}}


def reasoning(body: str, **extra: Any) -> dict[str, Any]:
    """An assistant message with a bulky reasoning part and a short answer."""
    parts = [{"type": "reasoning", "text": body}, {"type": "text", "text": "ok"}]
    return {"role": "assistant", "parts": parts, **extra}


async def window_refs(engine: Engine, cid: str) -> tuple[list[str], list[str]]:
    """The calls and the results in the window, in order; no result before its call."""
    window = await engine.window(cid)
    calls: list[str] = []
    results: list[str] = []
    for message in window.messages:
        made, answered = tool_refs(message)
        assert answered <= set(calls), f"a result before its call: {window.segments}"
        calls += sorted(made)
        results += sorted(answered)
    return calls, results


async def test_an_agent_loop_keeps_every_call_and_result_it_is_answering(engine: Engine) -> None:
    """One user request, then tool rounds: the request leaves the window (``limit``
    6), and every call and result just appended stays in it."""
    await engine.put_context("agent", token_budget=200, trigger_ratio=0.5, policy=skip_parts(6))
    await engine.append("agent", text("system", "You are an agent.", token_count=10))
    await engine.append("agent", text("user", "Research X, use tools.", token_count=10))
    for i in range(10):
        await engine.append("agent", call(f"call_{i}", "search", token_count=10))
        calls, _ = await window_refs(engine, "agent")
        assert f"call_{i}" in calls, f"round {i}: the call waiting for its result was dropped"
        await engine.append("agent", result(f"call_{i}", "search", token_count=10))
        calls, results = await window_refs(engine, "agent")
        assert f"call_{i}" in calls and f"call_{i}" in results, f"round {i}"
        assert set(calls) == set(results)
    window = await engine.window("agent")
    assert window.used_tokens <= 200
    assert window.messages[0].role == "system"
    assert window.segments[-1]["to_seq"] == 22


@pytest.mark.parametrize("compact_at", ["user", "result"])
async def test_a_call_interrupted_by_the_user_keeps_its_result(
    engine: Engine, compact_at: str
) -> None:
    """A call made, then a user message before its result (``user``: the
    compaction runs on the user message, while the call is open; ``result``:
    it runs on the result). Either way the call and its result stay paired in
    the window; the finished turn's reasoning is still skipped."""
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5, policy=skip_parts(50))
    await engine.append("c", text("system", "rules", token_count=10))
    await engine.append("c", text("user", "weather in Oslo?", token_count=10))
    bulky = 70 if compact_at == "user" else 60
    await engine.append("c", reasoning("thinking " * 20, token_count=bulky))
    await engine.append("c", call("c1", token_count=10))
    await engine.append("c", text("user", "and in Bergen?", token_count=10))
    if compact_at == "user":  # 110 tokens: over the budget
        assert len((await engine.window("c")).segments) == 2  # compacted
        calls, _ = await window_refs(engine, "c")
        assert calls == ["c1"], "the call still waiting for its result was dropped"
    else:  # 100 tokens: not over the budget yet
        assert len((await engine.window("c")).segments) == 1
    await engine.append("c", result("c1", token_count=10))
    assert len((await engine.window("c")).segments) == 2
    calls, results = await window_refs(engine, "c")
    assert calls == ["c1"] and results == ["c1"]
    window = await engine.window("c")
    assert window.used_tokens <= 100
    kinds = [part["type"] for message in window.messages for part in message.parts]
    assert "reasoning" not in kinds
