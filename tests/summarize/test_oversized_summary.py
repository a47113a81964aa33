"""A summary larger than the budget (an upstream that ignores the token limit)
gives way at once; the summariser must not ask again on every append."""

from __future__ import annotations

from fastpaca_core import Engine
from fastpaca_core.summarizer import Summarizer
from fastpaca_proxy.fake_upstream import FakeUpstream, Reply

from .support import FAST, assert_guarantees, model_for, policy, text, turn


async def test_a_summary_that_cannot_fit_is_not_asked_for_on_every_append(
    engine: Engine, fake: FakeUpstream
) -> None:
    fake.default_reply = Reply(text=" ".join(f"word{i}" for i in range(3000)))
    await engine.put_context("o", token_budget=1000, trigger_ratio=0.5, policy=policy(keep_last=2))
    await engine.append("o", text("system", "rules"))
    async with Summarizer(engine, model_for(fake), FAST) as summarizer:
        for i in range(40):
            await engine.append("o", turn(i))
            await summarizer.idle()
            await assert_guarantees(engine, "o")
    records = (await engine.list_summaries("o")).summaries
    assert records and records[0].token_count > 1000  # written, and too large to stay
    # asked again only when the window crosses its trigger again, not per append
    assert len(fake.requests) <= 8, len(fake.requests)
