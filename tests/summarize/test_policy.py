"""The ``summarize`` policy: validation, and its synchronous half (exactly ``last_n``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from core.test_policy_properties import Msg, check_window, conversations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpaca_core import Engine, ValidationError, open_store
from fastpaca_core.summarizer import Summarizer

from .support import FAST, StubModel, policy, turn


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "policy.config.model"),
        ({"model": ""}, "policy.config.model"),
        ({"model": 3}, "policy.config.model"),
        ({"model": "m", "provider": "mistral"}, "policy.config.provider"),
        ({"model": "m", "keep_last": 0}, "policy.config.keep_last"),
        ({"model": "m", "keep_last": True}, "policy.config.keep_last"),
        ({"model": "m", "max_summary_tokens": "512"}, "policy.config.max_summary_tokens"),
        ({"model": "m", "max_summary_tokens": 10**9}, "policy.config.max_summary_tokens"),
        ({"model": "m", "instructions": 5}, "policy.config.instructions"),
        ({"model": "m", "instructions": " "}, "policy.config.instructions"),
        ({"model": "m", "limit": -1}, "policy.config.limit"),
    ],
)
async def test_bad_config_names_the_field(config: dict[str, Any], field: str) -> None:
    async with open_store("memory://") as store:
        with pytest.raises(ValidationError) as caught:
            await Engine(store).put_context("c", policy={"strategy": "summarize", "config": config})
    assert caught.value.field == field


async def test_config_defaults() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        ctx = await engine.put_context("c", policy=policy())
        assert ctx.policy.config == {
            "model": "gpt-test",
            "provider": "openai",
            "keep_last": 6,
            "max_summary_tokens": 512,
            "limit": 200,
        }
        ctx = await engine.put_context(
            "d", policy=policy(provider="anthropic", keep_last=2, instructions="Be brief.")
        )
        assert ctx.policy.config["provider"] == "anthropic"
        assert ctx.policy.config["instructions"] == "Be brief."


async def test_without_a_summariser_it_trims_like_last_n() -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context("s", token_budget=300, policy=policy(limit=8))
        await engine.put_context(
            "l", token_budget=300, policy={"strategy": "last_n", "config": {"limit": 8}}
        )
        for i in range(40):
            for cid in ("s", "l"):
                await engine.append(cid, turn(i))
            summarized, trimmed = await engine.window("s"), await engine.window("l")
            assert summarized.segments == trimmed.segments
            assert summarized.used_tokens == trimmed.used_tokens <= 300


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    log=conversations(),
    budget=st.integers(30, 400),
    trigger=st.floats(0.2, 1.0),
    limit=st.integers(1, 40),
)
def test_synchronous_half_is_last_n(
    log: list[Msg], budget: int, trigger: float, limit: int
) -> None:
    async def run() -> None:
        async with open_store("memory://") as store:
            engine = Engine(store)
            for cid, spec in (
                ("s", policy(limit=limit)),
                ("l", {"strategy": "last_n", "config": {"limit": limit}}),
            ):
                await engine.put_context(
                    cid, token_budget=budget, trigger_ratio=trigger, policy=spec
                )
            for index, message in enumerate(log):
                await engine.append("s", message)
                await engine.append("l", message)
                window = await engine.window("s")
                check_window(log[: index + 1], window, budget)
                assert window.segments == (await engine.window("l")).segments

    asyncio.run(run())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    log=conversations(),
    budget=st.integers(60, 400),
    trigger=st.floats(0.2, 1.0),
    keep_last=st.integers(1, 6),
    folds=st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_summaries_keep_every_guarantee(
    log: list[Msg], budget: int, trigger: float, keep_last: int, folds: list[bool]
) -> None:
    """Random conversations, summaries swapped in at random points: the guarantees hold."""

    async def run() -> None:
        async with open_store("memory://") as store:
            engine = Engine(store)
            summarizer = Summarizer(engine, StubModel(text="short"), FAST)
            spec = policy(keep_last=keep_last)
            await engine.put_context("p", token_budget=budget, trigger_ratio=trigger, policy=spec)
            for index, message in enumerate(log):
                await engine.append("p", message)
                if folds[index % len(folds)]:
                    await summarizer.summarize("p")
                window = await engine.window("p")
                check_window(log[: index + 1], window, budget)
                seqs = [
                    s for seg in window.segments for s in range(seg["from_seq"], seg["to_seq"] + 1)
                ]
                assert seqs == sorted(set(seqs))

    asyncio.run(run())
