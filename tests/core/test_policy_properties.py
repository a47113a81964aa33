"""Property tests: random conversations with tool calls, every policy's guarantees.

After every append, whatever the policy (but ``manual``):
- ``used_tokens`` <= the budget, and equals the sum of the window's tokens;
- a tool call in the window has every logged result with it, and a result
  has its call before it (so the window never starts with an orphan result);
- leading system messages are kept while they fit the budget;
- the newest message is in the window whenever it fits beside them alone.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpaca_core import Engine, open_store
from fastpaca_core.toolcalls import tool_refs

Msg = dict[str, Any]

tokens = st.integers(min_value=1, max_value=60)


@st.composite
def tool_turn(draw: st.DrawFn, turn: int) -> list[Msg]:
    """An assistant message with 1-3 parallel calls, then their results."""
    ids = [f"t{turn}-{i}" for i in range(draw(st.integers(1, 3)))]
    call_parts = [
        {"type": f"tool-f{i}", "toolCallId": cid, "state": "input-available", "input": {"i": i}}
        for i, cid in enumerate(ids)
    ]
    if draw(st.booleans()):
        call_parts.insert(0, {"type": "text", "text": "let me check"})
    out: list[Msg] = [{"role": "assistant", "parts": call_parts, "token_count": draw(tokens)}]
    order = draw(st.permutations(ids))
    if draw(st.booleans()):
        out.append(
            {
                "role": "tool",
                "parts": [
                    {"type": "tool-result", "toolCallId": c, "toolName": "f", "output": 1}
                    for c in order
                ],
                "token_count": draw(tokens),
            }
        )
    else:
        out.extend(
            {
                "role": "tool",
                "parts": [{"type": "tool-result", "toolCallId": c, "toolName": "f", "output": 1}],
                "token_count": draw(tokens),
            }
            for c in order
        )
    return out


@st.composite
def conversations(draw: st.DrawFn) -> list[Msg]:
    msgs: list[Msg] = [
        {"role": "system", "parts": [{"type": "text", "text": "sys"}], "token_count": draw(tokens)}
        for _ in range(draw(st.integers(0, 2)))
    ]
    for turn in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["user", "assistant", "tool", "settled", "reasoning"]))
        if kind == "tool":
            msgs.extend(draw(tool_turn(turn)))
        elif kind == "settled":
            part = {
                "type": "dynamic-tool",
                "toolName": "x",
                "toolCallId": f"s{turn}",
                "state": "output-available",
                "input": {},
                "output": 2,
            }
            msgs.append({"role": "assistant", "parts": [part], "token_count": draw(tokens)})
        elif kind == "reasoning":
            parts = [{"type": "reasoning", "text": "hmm"}, {"type": "text", "text": "ok"}]
            msgs.append({"role": "assistant", "parts": parts, "token_count": draw(tokens)})
        else:
            part = {"type": "text", "text": f"{kind} {turn}"}
            msgs.append({"role": kind, "parts": [part], "token_count": draw(tokens)})
    return msgs


policies = st.one_of(
    st.builds(lambda n: {"strategy": "last_n", "config": {"limit": n}}, st.integers(1, 40)),
    st.builds(
        lambda n, kinds: {"strategy": "skip_parts", "config": {"limit": n, "skip_kinds": kinds}},
        st.integers(1, 40),
        st.sampled_from([["tool", "reasoning"], ["tool"], ["reasoning"], ["dynamic"]]),
    ),
)


def check_window(log: list[Msg], window: Any, budget: int) -> None:
    items = window.items
    assert window.used_tokens <= budget
    assert window.used_tokens == sum(item.tokens for item in items)
    # results of each call in the log, by call id
    results_in_log: dict[str, int] = {}
    for msg in log:
        for part in msg["parts"]:
            if part["type"] == "tool-result":
                results_in_log[part["toolCallId"]] = results_in_log.get(part["toolCallId"], 0) + 1
    seen_calls: set[str] = set()
    results_in_window: dict[str, int] = {}
    for item in items:
        calls, results = tool_refs(item.message)
        for cid in results:
            assert cid in seen_calls, f"result {cid} without its call before it"
        for part in item.message.parts:
            if part["type"] == "tool-result":
                cid = part["toolCallId"]
                results_in_window[cid] = results_in_window.get(cid, 0) + 1
        seen_calls |= calls
    for cid in seen_calls:
        assert results_in_window.get(cid, 0) == results_in_log.get(cid, 0), f"call {cid} split"
    if items:
        assert items[0].message.role != "tool"
    leading = []
    for msg in log:
        if msg["role"] != "system":
            break
        leading.append(msg)
    if leading and sum(m["token_count"] for m in leading) <= budget:
        assert [i.message.role for i in items[: len(leading)]] == ["system"] * len(leading)
        assert [i.from_seq for i in items[: len(leading)]] == list(range(1, len(leading) + 1))
    newest = log[-1]
    pinned = sum(m["token_count"] for m in leading)
    if (
        len(leading) < len(log)
        and newest["role"] in ("user", "system")
        and newest["token_count"] + pinned <= budget
    ):
        assert items and items[-1].from_seq == len(log)


# a random conversation, budget, trigger ratio and policy (``last_n`` or ``skip_parts``)
policy_cases = given(
    log=conversations(),
    budget=st.integers(30, 400),
    trigger=st.floats(0.2, 1.0),
    policy=policies,
)
slow_ok = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=60, deadline=None, suppress_health_check=slow_ok)
@policy_cases
def test_policies_keep_every_guarantee(
    log: list[Msg], budget: int, trigger: float, policy: dict[str, Any]
) -> None:
    async def run() -> None:
        async with open_store("memory://") as store:
            engine = Engine(store)
            await engine.put_context("p", token_budget=budget, trigger_ratio=trigger, policy=policy)
            for index, message in enumerate(log):
                await engine.append("p", message)
                window = await engine.window("p")
                check_window(log[: index + 1], window, budget)
                ctx = await engine.get_context("p")
                assert ctx.used_tokens == window.used_tokens
                assert ctx.last_seq == index + 1

    asyncio.run(run())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=conversations(), budget=st.integers(10, 300))
def test_budget_override_reads_keep_every_guarantee(log: list[Msg], budget: int) -> None:
    async def run() -> None:
        async with open_store("memory://") as store:
            engine = Engine(store)
            await engine.put_context("p", policy={"strategy": "manual"})
            await engine.append_batch("p", log)
            window = await engine.window("p", budget_tokens=budget)
            check_window(log, window, budget)
            full = await engine.window("p")
            assert full.used_tokens == sum(m["token_count"] for m in log)

    asyncio.run(run())


async def _compacts_as_the_memory_store(
    url: str, context_id: str, log: list[Msg], budget: int, trigger: float, policy: dict[str, Any]
) -> None:
    async with open_store("memory://") as memory, open_store(url) as durable:
        now = datetime(2026, 1, 1, tzinfo=UTC)
        engines = [Engine(memory, clock=lambda: now), Engine(durable, clock=lambda: now)]
        for engine in engines:
            await engine.put_context(
                context_id, token_budget=budget, trigger_ratio=trigger, policy=policy
            )
        for message in log:
            windows = []
            for engine in engines:
                await engine.append(context_id, message)
                windows.append(await engine.window(context_id))
            mem, got = windows
            assert [i.to_json() for i in got.items] == [i.to_json() for i in mem.items]
            assert (got.segments, got.used_tokens) == (mem.segments, mem.used_tokens)


@settings(max_examples=25, deadline=None, suppress_health_check=slow_ok)
@policy_cases
def test_sqlite_compacts_exactly_as_the_memory_store(
    tmp_path_factory: pytest.TempPathFactory,
    log: list[Msg],
    budget: int,
    trigger: float,
    policy: dict[str, Any],
) -> None:
    """SQLite's compactions read the live rows undecoded (``WindowItem.of_raw``:
    parts parsed only where the JSON holds a tool call id); after every append
    its window is the memory store's, item for item."""
    path = tmp_path_factory.mktemp("policy") / "p.db"
    url = f"sqlite:///{path}"
    asyncio.run(_compacts_as_the_memory_store(url, "p", log, budget, trigger, policy))


@pytest.mark.postgres
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[*slow_ok, HealthCheck.function_scoped_fixture],
)
@policy_cases
def test_postgres_compacts_exactly_as_the_memory_store(
    pg_url: str, log: list[Msg], budget: int, trigger: float, policy: dict[str, Any]
) -> None:
    """The same for PostgreSQL, whose compactions read the live rows undecoded
    too (``PgTx.read_items``); one schema for the test, a context per example."""
    context_id = f"p{uuid.uuid4().hex}"
    asyncio.run(_compacts_as_the_memory_store(pg_url, context_id, log, budget, trigger, policy))
