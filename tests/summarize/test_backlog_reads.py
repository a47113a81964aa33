"""How much of the log the summariser reads: bounded by what one fold takes,
never the whole history trimming left behind."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fastpaca_core import Engine, open_store
from fastpaca_core.folding import plan_fold
from fastpaca_core.model import StoredMessage
from fastpaca_core.summarizer import Summarizer
from fastpaca_core.window import WindowItem, valid_cuts
from fastpaca_proxy.fake_upstream import FakeUpstream

from .support import (
    FAST,
    StubModel,
    assert_coverage,
    assert_guarantees,
    call,
    model_for,
    policy,
    result,
    text,
)

HISTORY = 3000  # messages trimming dropped while no summary was written


def sized(message: dict[str, Any], tokens: int = 20) -> dict[str, Any]:
    return {**message, "token_count": tokens}


def say(i: int) -> dict[str, Any]:
    return sized(text("user" if i % 2 == 0 else "assistant", f"message {i}"))


class CountingLog:
    """The store's own log reads, counted."""

    def __init__(self, engine: Engine, context_id: str) -> None:
        self.engine, self.context_id = engine, context_id
        self.rows = 0

    async def __call__(self, from_seq: int, to_seq: int) -> list[StoredMessage]:
        rows = await self.engine.store.read_messages(self.context_id, from_seq, to_seq)
        self.rows += len(rows)
        return rows


async def trimmed_history(engine: Engine, cid: str, messages: list[dict[str, Any]]) -> None:
    """A summarize context whose history trimming dropped, no summariser running."""
    await engine.put_context(cid, token_budget=400, trigger_ratio=0.5, policy=policy(keep_last=2))
    await engine.append(cid, sized(text("system", "rules")))
    for start in range(0, len(messages), 500):
        await engine.append_batch(cid, messages[start : start + 500])
    window = await engine.window(cid)
    assert window.segments[1]["from_seq"] > len(messages) - 30  # the history is a gap


async def test_a_fold_reads_only_what_it_takes_of_a_long_gap() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await trimmed_history(engine, "c", [say(i) for i in range(HISTORY)])
        ctx, rows = await store.read_window("c")
        assert ctx is not None
        log = CountingLog(engine, "c")
        plan = await plan_fold(ctx, rows, keep_last=2, max_tokens=2000, read_log=log)
        assert plan is not None and plan.partial
        assert plan.cover_from == 2 and plan.entries[0].seq == 2
        assert sum(m.message.token_count or 0 for m in plan.entries) <= 2000
        assert [e.seq for e in plan.entries] == list(range(2, plan.up_to_seq + 1))
        # 100 rows of 20 tokens fill the fold: reading the whole 3000-row gap is waste
        assert log.rows < 600, log.rows


async def test_a_pair_across_a_read_page_is_never_split() -> None:
    # a call whose result comes 150 messages later, past the first page read
    async with open_store("memory://") as store:
        engine = Engine(store)
        messages = [say(i) for i in range(150)] + [sized(call("slow"))]
        messages += [say(i) for i in range(150, 300)] + [sized(result("slow"))]
        messages += [say(i) for i in range(300, HISTORY)]
        await trimmed_history(engine, "p", messages)
        ctx, rows = await store.read_window("p")
        assert ctx is not None
        log_items = [WindowItem.of_row(r) for r in await store.read_messages("p", 2, ctx.last_seq)]
        for max_tokens in (3500, 4000, 5000):
            log = CountingLog(engine, "p")
            plan = await plan_fold(ctx, rows, keep_last=2, max_tokens=max_tokens, read_log=log)
            assert plan is not None and plan.partial
            # the fold ends where the log can be cut: not between the call and its result
            assert valid_cuts(log_items)[plan.up_to_seq - 1], plan.up_to_seq
            assert log.rows <= 768, log.rows


async def test_without_a_key_a_wake_up_reads_no_history(fake: FakeUpstream) -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await trimmed_history(engine, "k", [say(i) for i in range(HISTORY)])
        log = CountingLog(engine, "k")
        reads = store.read_messages

        async def counted(cid: str, a: int, b: int, max_bytes: int | None = None) -> Any:
            found = await reads(cid, a, b, max_bytes)
            log.rows += len(found)
            return found

        store.read_messages = counted  # type: ignore[method-assign,assignment]
        async with Summarizer(engine, model_for(fake, key=None), FAST) as summarizer:
            for i in range(20):  # several over the trigger: each wakes the summariser
                await engine.append("k", say(HISTORY + i))
                await summarizer.idle()
        assert fake.requests == []
        # trimming reads a few rows; a summariser that cannot call out reads none
        assert log.rows < 200, log.rows


@pytest.mark.parametrize("pairs", [False, True])
async def test_a_long_backlog_is_caught_up_with_no_holes(pairs: bool) -> None:
    messages: list[dict[str, Any]] = []
    for i in range(600):
        messages += [say(i), sized(call(f"k{i}")), sized(result(f"k{i}"))] if pairs else [say(i)]
    async with open_store("memory://") as store:
        engine = Engine(store)
        await trimmed_history(engine, "b", messages)
        model = StubModel()
        options = dataclasses.replace(FAST, max_input_tokens=2000, max_rounds=50)
        async with Summarizer(engine, model, options) as summarizer:
            await engine.append("b", say(10_000))
            await summarizer.idle()
        window = await engine.window("b")
        ctx = await engine.get_context("b")
        assert_coverage(window.segments, ctx.last_seq, pinned=1)
        assert window.segments[1] == {
            "type": "summary",
            "from_seq": 2,
            "to_seq": window.segments[1]["to_seq"],
        }
        await assert_guarantees(engine, "b")
        records = (await engine.list_summaries("b")).summaries
        # every round took a bounded, contiguous slice: the transcripts hold each seq once
        seen = [int(line[1:].split("]")[0]) for p in model.prompts for line in _lines(p.user)]
        assert seen == sorted(set(seen)) and seen[0] == 2
        assert len(records) == len(model.prompts) > 1


def _lines(user: str) -> list[str]:
    transcript = user.split("<transcript>\n", 1)[1].split("\n</transcript>", 1)[0]
    return [line for line in transcript.splitlines() if line.startswith("[")]


async def test_a_backlog_longer_than_one_wake_up_is_finished_without_appends() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await trimmed_history(engine, "w", [say(i) for i in range(HISTORY)])
        model = StubModel()
        # two requests of 2000 tokens per turn of the queue: 60000 tokens take many turns
        options = dataclasses.replace(FAST, max_input_tokens=2000, max_rounds=2)
        async with Summarizer(engine, model, options) as summarizer:
            await engine.append("w", say(10_000))  # the one wake-up
            await summarizer.idle()
        window = await engine.window("w")
        ctx = await engine.get_context("w")
        assert_coverage(window.segments, ctx.last_seq, pinned=1)
        assert window.segments[1]["from_seq"] == 2 and len(model.prompts) > 2
