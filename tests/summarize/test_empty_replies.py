"""Replies with no summary in them: retried when another try may help, not when
the model spent all of ``max_summary_tokens`` before writing anything (a
reasoning model thinking past the limit answers alike every time)."""

from __future__ import annotations

import logging

import pytest

from fastpaca_core import Engine
from fastpaca_core.summarizer import Summarizer
from fastpaca_proxy.fake_upstream import FakeUpstream, Reply, Usage
from fastpaca_proxy.fake_upstream.script import Protocol

from .support import FAST, model_for, policy, turn

PROTOCOL: dict[str, Protocol] = {"openai": "openai_chat", "anthropic": "anthropic"}


async def one_wake_up(engine: Engine, summarizer: Summarizer, provider: str) -> None:
    await engine.put_context(
        "e",
        token_budget=10_000,
        trigger_ratio=0.01,
        policy=policy(provider=provider, model="claude-test", keep_last=1),
    )
    await engine.append_batch("e", [turn(0), turn(1), turn(2)])
    await summarizer.idle()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_reply_cut_at_the_limit_before_any_text_is_not_retried(
    engine: Engine, fake: FakeUpstream, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastpaca.summarizer")
    fake.default_reply = Reply(
        text="", finish_reason="length", usage=Usage(completion_tokens=512, reasoning_tokens=512)
    )
    async with Summarizer(engine, model_for(fake), FAST) as summarizer:
        await one_wake_up(engine, summarizer, provider)
    assert len(fake.requests_for(PROTOCOL[provider])) == 1
    assert (await engine.list_summaries("e")).summaries == []
    logged = " ".join(str(getattr(r, "fields", "")) + r.getMessage() for r in caplog.records)
    assert "max_summary_tokens" in logged


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_empty_reply_is_retried(engine: Engine, fake: FakeUpstream, provider: str) -> None:
    fake.script(Reply(text=""), Reply(text=" \n"), protocol=PROTOCOL[provider])
    async with Summarizer(engine, model_for(fake), FAST) as summarizer:
        await one_wake_up(engine, summarizer, provider)
    assert len(fake.requests_for(PROTOCOL[provider])) == 3
    assert len((await engine.list_summaries("e")).summaries) == 1
