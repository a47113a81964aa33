"""A trigger band narrower than a message: an append that jumps from under the
trigger to over the budget is trimmed back under the trigger in the same
append. The summariser must still fold what trimming dropped."""

from __future__ import annotations

import pytest

from fastpaca_core import Engine
from fastpaca_core.summarizer import Summarizer

from .support import FAST, StubModel, assert_coverage, assert_guarantees, policy, text, turn


@pytest.mark.parametrize("trigger_ratio", [1.0, 0.95])
async def test_trimming_past_a_narrow_band_still_gets_summarised(
    engine: Engine, trigger_ratio: float
) -> None:
    await engine.put_context(
        "n", token_budget=600, trigger_ratio=trigger_ratio, policy=policy(keep_last=3)
    )
    await engine.append("n", text("system", "rules"))
    model = StubModel()
    async with Summarizer(engine, model, FAST) as summarizer:
        for i in range(60):
            await engine.append("n", turn(i))
            await summarizer.idle()
            await assert_guarantees(engine, "n")
    assert model.prompts  # the summariser was woken and wrote summaries
    window = await engine.window("n")
    ctx = await engine.get_context("n")
    assert_coverage(window.segments, ctx.last_seq, pinned=1)
    assert window.segments[1]["type"] == "summary" and window.segments[1]["from_seq"] == 2
    assert len(model.prompts) < 30  # each trimming is folded once, not every append


async def test_a_rewind_under_the_trigger_wakes_no_summary(engine: Engine) -> None:
    await engine.put_context(
        "r", token_budget=10_000, trigger_ratio=0.9, policy=policy(keep_last=2)
    )
    model = StubModel()
    async with Summarizer(engine, model, FAST) as summarizer:
        await engine.append_batch("r", [text("system", "rules"), *map(turn, range(8))])
        ctx = await engine.get_context("r")
        for _ in range(3):  # the newest answer regenerated, three times
            await engine.append_batch("r", [turn(7)], rewind_to_seq=ctx.last_seq)
            ctx = await engine.get_context("r")
            await engine.append("r", turn(8))
            ctx = await engine.get_context("r")
            await summarizer.idle()
    segments = (await engine.window("r")).segments
    assert len(segments) > 1  # the regenerated answers are holes in the window
    assert model.prompts == []


async def test_a_cleared_context_is_not_folded_back(engine: Engine) -> None:
    """An explicit compaction to nothing (LangChain's ``clear()``) leaves the
    hole trimming leaves, but what it cleared stays out of the window: only an
    append whose own policy run trimmed wakes the summariser for a hole."""
    await engine.put_context("c", token_budget=100_000, policy=policy(keep_last=2))
    for i in range(10):
        await engine.append("c", turn(i))
    await engine.compact("c", [])
    model = StubModel()
    async with Summarizer(engine, model, FAST) as summarizer:
        for i in range(10, 14):
            await engine.append("c", turn(i))
            await summarizer.idle()
    ctx, _ = await engine.store.read_window("c")
    assert [e.kind for e in ctx.prefix] == []
    assert (ctx.live_from_seq, model.prompts) == (11, [])
