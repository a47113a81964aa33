"""Property tests over adversarial conversations: every policy's guarantees.

Beyond ``test_policy_properties``: results for calls never made, results
before their call (in one batch too), tool call ids reused across turns,
``dynamic-tool`` calls, settled (``output-available``) parts with a separate
result of the same id, a call and a result in one message, system messages
in the middle, ``token_count`` 0, budgets down to 1 token, ``skip_kinds``
that match text or results, and pending turns (the proxy's) under a read's
own budget.

After every append, whatever the policy (but ``manual``):
- ``used_tokens`` <= the budget;
- a result pairs with the newest call of its id before it in the log: a
  window holding one of the two holds the other;
- every result in the window has a call of its id before it (no orphan);
- leading system messages are kept while they fit the budget;
- the newest message (no tool call or result) is kept whenever it fits
  beside them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpaca_core import Engine, open_store
from fastpaca_core.toolcalls import parts_refs, tool_refs
from fastpaca_core.window import WindowItem

Msg = dict[str, Any]

tokens = st.integers(0, 80)
ids = st.sampled_from(["a", "b", "c", "call_0"])


def call_part(call_id: str, dynamic: bool, state: str = "input-available") -> dict[str, Any]:
    if dynamic:
        kind = {"type": "dynamic-tool", "toolName": "d"}
    else:
        kind = {"type": "tool-f"}
    return {**kind, "toolCallId": call_id, "state": state, "input": {}}


def result_part(call_id: str) -> dict[str, Any]:
    return {"type": "tool-result", "toolCallId": call_id, "toolName": "f", "output": 1}


@st.composite
def message(draw: st.DrawFn) -> Msg:
    kind = draw(
        st.sampled_from(
            ["user", "assistant", "system", "calls", "results", "settled", "mixed", "user-results"]
        )
    )
    count = draw(tokens)
    if kind in ("user", "system"):
        parts = [{"type": "text", "text": kind}]
    elif kind == "assistant":
        parts = [{"type": "text", "text": "a"}, {"type": "reasoning", "text": "r"}]
    elif kind == "calls":
        made = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
        parts = [call_part(c, draw(st.booleans())) for c in made]
    elif kind == "results":
        parts = [result_part(c) for c in draw(st.lists(ids, min_size=1, max_size=3, unique=True))]
    elif kind == "user-results":
        answered = draw(st.lists(ids, min_size=1, max_size=2, unique=True))
        parts = [*map(result_part, answered), {"type": "text", "text": "and?"}]
    elif kind == "settled":
        settled = call_part(draw(ids), draw(st.booleans()), "output-available")
        parts = [{**settled, "output": 1}]
    else:  # a call and a result (of another call, or of its own) in one message
        parts = [{"type": "text", "text": "m"}, call_part(draw(ids), False)]
        parts.append(result_part(draw(ids)))
    role = {"calls": "assistant", "results": "tool", "user-results": "user"}.get(kind, kind)
    if kind in ("settled", "mixed"):
        role = "assistant"
    return {"role": role, "parts": parts, "token_count": count}


@st.composite
def conversations(draw: st.DrawFn) -> list[Msg]:
    leading = [
        {"role": "system", "parts": [{"type": "text", "text": "s"}], "token_count": draw(tokens)}
        for _ in range(draw(st.integers(0, 2)))
    ]
    return leading + draw(st.lists(message(), min_size=1, max_size=16))


policies = st.one_of(
    st.builds(lambda n: {"strategy": "last_n", "config": {"limit": n}}, st.integers(1, 10)),
    st.builds(
        lambda n, kinds: {"strategy": "skip_parts", "config": {"limit": n, "skip_kinds": kinds}},
        st.integers(1, 10),
        st.sampled_from(
            [["tool", "reasoning"], ["dynamic"], ["tool-result"], ["text"], ["t"], ["tool-f"]]
        ),
    ),
    st.builds(
        lambda n: {"strategy": "summarize", "config": {"model": "m", "limit": n}},
        st.integers(1, 10),
    ),
)


def pairs(log: Sequence[tuple[int, Msg]]) -> list[tuple[int, int, str]]:
    """``(call seq, result seq, id)``: each result with the newest call of its id before it."""
    newest_call: dict[str, int] = {}
    found: list[tuple[int, int, str]] = []
    for seq, msg in log:
        calls, results = parts_refs(msg["parts"])
        found.extend((newest_call[r], seq, r) for r in results if r in newest_call)
        for call_id in calls:
            newest_call[call_id] = seq
    return found


def check(
    log: Sequence[tuple[int, Msg]],
    items: Sequence[WindowItem],
    budget: int,
    used: int,
    lead_budget: int,
) -> None:
    assert used <= budget
    held = {item.from_seq: item for item in items if item.kind == "live"}
    for call_seq, result_seq, call_id in pairs(log):
        has_call = call_seq in held and call_id in tool_refs(held[call_seq].message)[0]
        has_result = result_seq in held and call_id in tool_refs(held[result_seq].message)[1]
        assert has_call == has_result, f"{call_id}: call {call_seq}, result {result_seq} split"
    seen: set[str] = set()
    for item in items:
        calls, results = tool_refs(item.message)
        assert results <= seen, f"orphan results {results - seen} at {item.from_seq}"
        seen |= calls
    leading: list[Msg] = []
    for _, msg in log:
        if msg["role"] != "system":
            break
        leading.append(msg)
    pinned = sum(m["token_count"] for m in leading)
    if leading and pinned <= lead_budget:
        assert [i.from_seq for i in items[: len(leading)]] == list(range(1, len(leading) + 1))
    newest_seq, newest = log[-1]
    if (
        len(leading) < len(log)
        and not any(parts_refs(newest["parts"]))
        and newest["token_count"] + pinned <= lead_budget
    ):
        assert items and items[-1].from_seq == newest_seq


slow_ok = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=200, deadline=None, suppress_health_check=slow_ok)
@given(
    log=conversations(),
    budget=st.integers(1, 200),
    trigger=st.sampled_from([0.2, 0.5, 0.57, 0.7, 1.0]),
    policy=policies,
    batch=st.integers(1, 3),
)
def test_adversarial_conversations_keep_every_guarantee(
    log: list[Msg], budget: int, trigger: float, policy: dict[str, Any], batch: int
) -> None:
    async def run() -> None:
        async with open_store("memory://") as store:
            engine = Engine(store)
            await engine.put_context("p", token_budget=budget, trigger_ratio=trigger, policy=policy)
            for start in range(0, len(log), batch):
                await engine.append_batch("p", log[start : start + batch])
                appended = list(enumerate(log[: start + batch], start=1))
                window = await engine.window("p")
                check(appended, window.items, budget, window.used_tokens, budget)
                assert (await engine.get_context("p")).used_tokens == window.used_tokens

    asyncio.run(run())


@settings(max_examples=200, deadline=None, suppress_health_check=slow_ok)
@given(
    log=conversations(),
    pending=st.lists(message(), min_size=1, max_size=4),
    budget=st.integers(1, 200),
    policy=policies,
    override=st.integers(1, 200),
)
def test_a_pending_turn_under_a_read_budget_keeps_every_guarantee(
    log: list[Msg], pending: list[Msg], budget: int, policy: dict[str, Any], override: int
) -> None:
    """The proxy's read: the window with a turn not appended yet, cut to a
    read's own budget (``keep_pending=0``: every pending message may be cut)."""

    async def run() -> None:
        async with open_store("memory://") as store:
            engine = Engine(store)
            await engine.put_context("p", token_budget=budget, policy=policy)
            await engine.append_batch("p", log)
            window = await engine.window(
                "p", pending=pending, keep_pending=0, budget_tokens=override
            )
            whole = list(enumerate([*log, *pending], start=1))
            lead_budget = min(budget, override)
            check(whole, window.items, override, window.used_tokens, lead_budget)

    asyncio.run(run())
