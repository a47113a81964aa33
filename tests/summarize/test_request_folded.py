"""A pinned user request is folded into the first summary, with everything
trimming dropped around it: no seq is left out of both the summaries and the
window (it used to be: the request was trimmed before the first summary, and
the summaries covered only what was live)."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastpaca_core import Engine
from fastpaca_core.folding import FoldPlan, plan_fold
from fastpaca_core.summarizer import Summarizer
from fastpaca_core.summary_prompt import build_prompt

from .support import (
    SUMMARY_TEXT,
    assert_coverage,
    assert_guarantees,
    call,
    policy,
    result,
    text,
)

REQUEST = "Compare the three Oslo hotels and book the cheapest."


def sized(message: dict[str, Any], tokens: int = 10) -> dict[str, Any]:
    return {**message, "token_count": tokens}


def loop(first: int, rounds: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(first, first + rounds):
        out += [sized(call(f"k{i}")), sized(result(f"k{i}"))]
    return out


async def plan_of(engine: Engine, cid: str, keep_last: int) -> FoldPlan:
    ctx, rows = await engine.store.read_window(cid)
    assert ctx is not None
    plan = await plan_fold(
        ctx,
        rows,
        keep_last=keep_last,
        max_tokens=10_000,
        read_log=partial(engine.store.read_messages, cid),
    )
    assert plan is not None
    return plan


async def test_the_first_fold_takes_the_request_and_the_trimmed_gap(engine: Engine) -> None:
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5, policy=policy(keep_last=2))
    await engine.append("c", sized(text("system", "You are an agent.")))
    await engine.append("c", sized(text("user", REQUEST)))
    for message in loop(0, 10):  # no summariser: trimming alone, the request pinned
        await engine.append("c", message)
    ctx = await engine.get_context("c")
    assert [e.from_seq for e in ctx.prefix] == [1, 2] and ctx.live_from_seq == 15
    plan = await plan_of(engine, "c", keep_last=2)
    assert plan.cover_from == 2
    assert [e.seq for e in plan.entries] == list(range(2, plan.up_to_seq + 1))
    assert plan.up_to_seq == 20
    prompt = build_prompt(plan, max_summary_tokens=300, instructions=None)
    assert f"[2] user: {REQUEST}" in prompt.user
    assert "[3] assistant: calls tool weather (id k0)" in prompt.user  # read back
    # trimming after the snapshot (after the pinned request) does not make it stale
    await engine.append("c", sized(call("k10")))
    ctx = await engine.get_context("c")
    assert [e.from_seq for e in ctx.prefix] == [1, 2] and ctx.live_from_seq == 21
    record = await engine.apply_summary(
        plan, SUMMARY_TEXT, provider="openai", model="gpt-test", prompt_sha256="0" * 64
    )
    assert record is not None and (record.from_seq, record.to_seq) == (2, 20)
    window = await engine.window("c")
    assert window.segments == [
        {"type": "live", "from_seq": 1, "to_seq": 1},
        {"type": "summary", "from_seq": 2, "to_seq": 20},
        {"type": "live", "from_seq": 21, "to_seq": 23},
    ]
    assert_coverage(window.segments, 23, pinned=1)
    await engine.append("c", sized(result("k10")))
    await assert_guarantees(engine, "c")


async def test_no_seq_is_lost_when_trimming_came_first(
    engine: Engine, summarizer: Summarizer
) -> None:
    """One batch jumps past the budget before any summary exists: the request
    and the trimmed rounds end up in the first summary."""
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5, policy=policy(keep_last=2))
    await engine.append_batch(
        "c", [sized(text("system", "You are an agent.")), sized(text("user", REQUEST)), *loop(0, 8)]
    )
    await engine.append_batch("c", loop(8, 1))  # over the trigger: wakes the summariser
    await summarizer.idle()
    window = await engine.window("c")
    ctx = await engine.get_context("c")
    assert_coverage(window.segments, ctx.last_seq, pinned=1)
    assert window.segments[1]["type"] == "summary"
    assert window.segments[1]["from_seq"] == 2  # the request is in the first summary
    await assert_guarantees(engine, "c")
