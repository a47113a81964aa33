"""Planning a fold, and swapping the summary in only while the plan is still valid."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastpaca_core import Engine, open_store
from fastpaca_core.folding import FoldPlan, plan_fold
from fastpaca_core.summarizer import Summarizer, SummarizerOptions
from fastpaca_core.summary_prompt import build_prompt

from .support import (
    FAST,
    SUMMARY_TEXT,
    StubModel,
    assert_coverage,
    assert_guarantees,
    call,
    policy,
    result,
    text,
)


def sized(message: dict[str, Any], tokens: int = 20) -> dict[str, Any]:
    return {**message, "token_count": tokens}


def say(i: int) -> dict[str, Any]:
    return sized(text("user" if i % 2 == 0 else "assistant", f"message {i}"))


async def plan_of(
    engine: Engine, cid: str, keep_last: int = 3, max_tokens: int = 10_000
) -> FoldPlan:
    ctx, rows = await engine.store.read_window(cid)
    assert ctx is not None
    plan = await plan_fold(
        ctx,
        rows,
        keep_last=keep_last,
        max_tokens=max_tokens,
        read_log=partial(engine.store.read_messages, cid),
    )
    assert plan is not None
    return plan


async def apply(engine: Engine, plan: FoldPlan, **kw: Any) -> Any:
    return await engine.apply_summary(
        plan, SUMMARY_TEXT, provider="openai", model="gpt-test", prompt_sha256="0" * 64, **kw
    )


async def test_plan_skips_pinned_keeps_newest_and_never_splits_a_pair() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context("c", token_budget=10_000, policy=policy(keep_last=3))
        log = [sized(text("system", "rules")), say(2), say(3), say(4), say(5), say(6)]
        log += [sized(call("k1")), sized(result("k1")), say(9), say(10)]
        await engine.append_batch("c", log)
        plan = await plan_of(engine, "c", keep_last=3)
        # keeping 3 would start at the result of seq 7's call: the cut moves before the call
        assert (plan.cover_from, plan.up_to_seq) == (2, 6)
        assert [e.seq for e in plan.entries] == [2, 3, 4, 5, 6]
        assert plan.previous == () and not plan.partial
        record = await apply(engine, plan)
        assert record is not None and (record.from_seq, record.to_seq) == (2, 6)
        window = await engine.window("c")
        assert window.segments == [
            {"type": "live", "from_seq": 1, "to_seq": 1},
            {"type": "summary", "from_seq": 2, "to_seq": 6},
            {"type": "live", "from_seq": 7, "to_seq": 10},
        ]
        assert window.messages[1].role == "system"
        assert SUMMARY_TEXT in window.messages[1].parts[0]["text"]
        assert record.message == window.messages[1]
        await assert_guarantees(engine, "c")


async def test_the_prompt_holds_previous_summary_transcript_and_instructions() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context("c", token_budget=10_000, policy=policy(keep_last=1))
        await engine.append_batch("c", [say(0), say(1), say(2)])
        assert await apply(engine, await plan_of(engine, "c", keep_last=1)) is not None
        await engine.append_batch("c", [sized(call("k9")), sized(result("k9")), say(6)])
        plan = await plan_of(engine, "c", keep_last=1)
        assert plan.previous == (SUMMARY_TEXT,)
        prompt = build_prompt(plan, max_summary_tokens=300, instructions="Keep city names.")
        assert f"<previous_summary>\n{SUMMARY_TEXT}\n</previous_summary>" in prompt.user
        assert '[4] assistant: calls tool weather (id k9) with {"city":"Oslo"}' in prompt.user
        assert '[5] tool: result of weather (id k9): {"t":3}' in prompt.user
        assert "[3] user: message 2" in prompt.user
        assert "about 300 tokens" in prompt.user and "Keep city names." in prompt.user
        assert len(prompt.sha256) == 64


async def test_a_plan_is_stale_once_another_summary_landed() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context("c", token_budget=10_000, policy=policy())
        await engine.append_batch("c", [say(i) for i in range(10)])
        first, second = await plan_of(engine, "c"), await plan_of(engine, "c")
        assert await apply(engine, second) is not None
        version = (await engine.get_context("c")).version
        assert await apply(engine, first) is None
        assert (await engine.get_context("c")).version == version
        assert len((await engine.list_summaries("c")).summaries) == 1


async def test_a_plan_is_stale_after_a_rewind_into_what_it_folded() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context("c", token_budget=10_000, policy=policy())
        await engine.append_batch("c", [say(i) for i in range(10)])
        plan = await plan_of(engine, "c")
        await engine.append_batch("c", [say(99)], rewind_to_seq=plan.up_to_seq)
        assert await apply(engine, plan) is None


async def test_appends_and_trimming_meanwhile_do_not_make_a_plan_stale() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context(
            "c", token_budget=300, trigger_ratio=0.94, policy=policy(keep_last=3)
        )
        await engine.append("c", sized(text("system", "rules")))
        for i in range(2, 9):
            await engine.append("c", say(i))
        plan = await plan_of(engine, "c")  # folds 2..5, keeps 6..8
        for i in range(9, 17):  # over the budget: trimming cuts into the folded part
            await engine.append("c", say(i))
        before = (await engine.window("c")).segments
        assert before[1] == {"type": "live", "from_seq": 4, "to_seq": 16}
        record = await apply(engine, plan)
        assert record is not None and (record.from_seq, record.to_seq) == (2, plan.up_to_seq)
        window = await engine.window("c")
        assert window.segments[1] == {"type": "summary", "from_seq": 2, "to_seq": plan.up_to_seq}
        await assert_guarantees(engine, "c")


async def test_a_lost_lease_refuses_the_swap() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context("c", token_budget=10_000, policy=policy())
        await engine.append_batch("c", [say(i) for i in range(10)])
        plan = await plan_of(engine, "c")
        assert await engine.take_lease("c", "other", 30.0)
        assert await apply(engine, plan, lease=("me", 30.0)) is None
        await engine.drop_lease("c", "other")
        assert await apply(engine, plan, lease=("me", 30.0)) is not None


async def test_messages_trimmed_after_a_summary_are_folded_back_from_the_log() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context(
            "c", token_budget=300, trigger_ratio=0.6, policy=policy(keep_last=2)
        )
        summarizer = Summarizer(engine, StubModel(), FAST)  # not started: called by hand
        await engine.append("c", sized(text("system", "rules")))
        seq = 1
        while not (await engine.list_summaries("c")).summaries:
            seq += 1
            await engine.append("c", say(seq))
            await summarizer.summarize("c")
        for _ in range(12):  # the summariser is "down": trimming leaves a gap
            seq += 1
            await engine.append("c", say(seq))
        segments = (await engine.window("c")).segments
        assert segments[2]["from_seq"] > segments[1]["to_seq"] + 1  # the gap
        record = await summarizer.summarize("c")
        assert record is not None
        window = await engine.window("c")
        assert_coverage(window.segments, seq, pinned=1)
        assert window.segments[1]["from_seq"] == 2  # nothing lost since the first summary
        await assert_guarantees(engine, "c")


async def test_a_long_backlog_is_folded_oldest_first_in_rounds() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context(
            "c", token_budget=300, trigger_ratio=0.6, policy=policy(keep_last=2)
        )
        model = StubModel()
        small = SummarizerOptions(
            lease_ttl=5.0, retry_initial=0.01, max_input_tokens=100, max_rounds=50
        )
        summarizer = Summarizer(engine, model, small)
        for i in range(10):
            await engine.append("c", say(i))
        assert await summarizer.summarize("c") is not None
        for i in range(10, 60):  # the summariser is "down": trimming cuts, a backlog grows
            await engine.append("c", say(i))
        last = 60
        while not (await engine.window("c")).needs_compaction:
            await engine.append("c", say(last))
            last += 1
        calls = len(model.prompts)
        assert await summarizer.summarize("c") is not None
        assert len(model.prompts) - calls > 1  # several rounds
        assert all(len(p.user) < 2000 for p in model.prompts)
        window = await engine.window("c")
        assert_coverage(window.segments, last)
        assert window.segments[0] == {"type": "summary", "from_seq": 1, "to_seq": last - 2}
        await assert_guarantees(engine, "c")
