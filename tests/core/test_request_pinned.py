"""The newest user request stays in the window through a long agent loop.

Trimming keeps the newest contiguous run of messages; a loop of tool calls and
results after the user's request used to push the request out, so the model
went on calling tools without the request it was working on. The request is
now pinned after the leading system messages when a cut would remove it, with
every other guarantee kept. On every store, and once through the proxy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
from proxy.support import OPENAI_MODEL, run_stack

from fastpaca_core import Engine
from fastpaca_core.toolcalls import tool_refs
from fastpaca_proxy.fake_upstream import Reply, ToolCall

from .helpers import call, result, text


def sized(message: dict[str, Any], tokens: int) -> dict[str, Any]:
    return {**message, "token_count": tokens}


async def check(engine: Engine, cid: str) -> Any:
    """The stored window, checked: budget, no call without its result, no orphan."""
    ctx = await engine.get_context(cid)
    window = await engine.window(cid)
    assert window.used_tokens <= ctx.token_budget
    calls: set[str] = set()
    results: set[str] = set()
    for message in window.messages:
        made, answered = tool_refs(message)
        assert answered <= calls, "a result whose call is not before it"
        calls |= made
        results |= answered
    assert calls == results, "a call without its result"
    return window


def texts(window: Any) -> list[str]:
    return [p["text"] for m in window.messages for p in m.parts if p["type"] == "text"]


async def test_the_request_stays_through_a_long_tool_loop(engine: Engine) -> None:
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5)
    await engine.append("c", sized(text("system", "You are an agent."), 10))
    await engine.append("c", sized(text("user", "Book the cheapest hotel."), 10))
    for i in range(12):
        await engine.append("c", sized(call(f"k{i}"), 10))
        await engine.append("c", sized(result(f"k{i}"), 10))
        window = await check(engine, "c")
        assert texts(window)[:2] == ["You are an agent.", "Book the cheapest hotel."]
    ctx = await engine.get_context("c")
    assert window.segments == [
        {"type": "live", "from_seq": 1, "to_seq": 2},
        {"type": "live", "from_seq": ctx.live_from_seq, "to_seq": 26},
    ]
    assert ctx.live_from_seq > 3  # the loop's oldest rounds were cut
    assert [entry.from_seq for entry in ctx.prefix] == [1, 2]
    # a budgeted read keeps it too
    read = await engine.window("c", budget_tokens=40)
    assert [item.from_seq for item in read.items] == [1, 2, 25, 26]


async def test_only_the_newest_request_is_pinned(engine: Engine) -> None:
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5)
    await engine.append("c", sized(text("user", "first"), 10))
    await engine.append("c", sized(text("assistant", "done"), 10))
    await engine.append("c", sized(text("user", "second"), 10))
    for i in range(8):
        await engine.append("c", sized(call(f"k{i}"), 10))
        await engine.append("c", sized(result(f"k{i}"), 10))
    window = await check(engine, "c")
    assert texts(window) == ["second"]
    assert window.segments[0] == {"type": "live", "from_seq": 3, "to_seq": 3}


async def test_the_request_loses_results_whose_calls_are_cut(engine: Engine) -> None:
    """A user message holding a tool result and a new question (Anthropic style)
    is a request; pinned without its call, it loses the result part only."""
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5)
    await engine.append("c", sized(text("user", "look it up"), 10))
    await engine.append("c", sized(call("k0"), 10))
    mixed = result("k0")
    mixed = {"role": "user", "parts": [*mixed["parts"], {"type": "text", "text": "and book"}]}
    await engine.append("c", sized(mixed, 20))
    for i in range(1, 8):
        await engine.append("c", sized(call(f"k{i}"), 10))
        await engine.append("c", sized(result(f"k{i}"), 10))
    window = await check(engine, "c")
    assert window.messages[0].role == "user"
    assert window.messages[0].parts == [{"type": "text", "text": "and book"}]
    assert window.segments[0] == {"type": "live", "from_seq": 3, "to_seq": 3}
    log = await engine.tail("c", limit=100)  # the log is untouched
    assert any(m.seq == 3 and len(m.parts) == 2 for m in log)


async def test_the_message_limit_counts_the_request(engine: Engine) -> None:
    await engine.put_context(
        "c",
        token_budget=10_000,
        trigger_ratio=0.5,
        policy={"strategy": "last_n", "config": {"limit": 6}},
    )
    await engine.append("c", sized(text("system", "sys"), 10))
    await engine.append("c", sized(text("user", "req"), 10))
    for i in range(6):
        await engine.append("c", sized(call(f"k{i}"), 1000))
        await engine.append("c", sized(result(f"k{i}"), 1000))
        window = await check(engine, "c")
        assert len(window.items) <= 6
        assert texts(window) == ["sys", "req"]


async def test_the_turn_in_flight_wins_when_both_do_not_fit(engine: Engine) -> None:
    """Pinned messages + the request + the pending turn over the budget: the
    request gives way, as before, and the turn in flight is sent whole."""
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5)
    await engine.append("c", sized(text("user", "req"), 30))
    await engine.append("c", sized(call("k0"), 30))
    await engine.append("c", sized(result("k0"), 30))
    await engine.append("c", sized(call("k1"), 30))
    window = await engine.window("c", pending=[sized(result("k1"), 50)])
    assert [item.role for item in window.items] == ["assistant", "tool"]
    assert window.used_tokens == 80
    # with room for it, the request is sent too
    window = await engine.window("c", pending=[sized(result("k1"), 30)])
    assert [item.from_seq for item in window.items] == [1, 4, 5]
    assert window.used_tokens == 90


def test_the_upstream_gets_the_request_in_an_agent_loop(tmp_path: Path) -> None:
    """The reported case: the default policy through the proxy, budget 600; from
    the fifth round on the upstream got tool calls and results only."""
    with run_stack(f"sqlite:///{tmp_path / 'agent.db'}") as stack:
        stack.api.put("/v1/contexts/agent", json={"token_budget": 600}).raise_for_status()
        sdk = stack.track(
            openai.OpenAI(base_url=stack.openai_url("agent"), api_key="k", max_retries=0)
        )
        request = "Compare the prices of the three Oslo hotels and book the cheapest."
        send: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a research agent."},
            {"role": "user", "content": request},
        ]
        for i in range(7):
            stack.fake.script(
                Reply(
                    tool_calls=[ToolCall("fetch_page", {"url": f"https://e.com/{i}"}, id=f"c{i}")]
                )
            )
            sdk.chat.completions.create(model=OPENAI_MODEL, messages=send)  # type: ignore[arg-type]
            sent = stack.fake.last.json["messages"]
            assert [m["content"] for m in sent if m["role"] == "user"] == [request], i
            made: set[str] = set()
            for m in sent:  # every result follows its call
                made |= {c["id"] for c in m.get("tool_calls") or []}
                assert m["role"] != "tool" or m["tool_call_id"] in made
            send = [{"role": "tool", "tool_call_id": f"c{i}", "content": "page text " * 60}]
        window = stack.window("agent")
        assert window["used_tokens"] <= 600
        assert window["segments"][0]["from_seq"] == 1
        assert len(window["segments"]) == 2  # the request, then the newest rounds
