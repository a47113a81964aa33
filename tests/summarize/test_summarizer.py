"""The background summariser on every backend, against the fake upstream (real SDKs)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fastpaca_core import Engine
from fastpaca_core.summarizer import Summarizer
from fastpaca_core.summary_prompt import SYSTEM_PROMPT
from fastpaca_proxy.fake_upstream import ErrorReply, FakeUpstream, Reply

from .support import (
    FAST,
    SUMMARY_TEXT,
    StubModel,
    assert_coverage,
    assert_guarantees,
    call,
    model_for,
    policy,
    result,
    text,
    turn,
)


async def converse(engine: Engine, summarizer: Summarizer, cid: str, count: int) -> int:
    """``count`` messages with a tool pair every few turns; waits for the summariser."""
    await engine.append(cid, text("system", "You are a helpful assistant."))
    seq = 1
    for i in range(count):
        if i % 7 == 3:
            await engine.append_batch(cid, [call(f"c{i}"), result(f"c{i}")])
            seq += 2
        else:
            await engine.append(cid, turn(i))
            seq += 1
        await summarizer.idle()
        await assert_guarantees(engine, cid)
    return seq


async def test_a_long_conversation_is_summarised_under_budget(
    engine: Engine, fake: FakeUpstream, summarizer: Summarizer
) -> None:
    await engine.put_context(
        "long", token_budget=600, trigger_ratio=0.7, policy=policy(keep_last=4)
    )
    last_seq = await converse(engine, summarizer, "long", 60)
    window = await engine.window("long")
    assert window.used_tokens <= 600
    # the summariser kept up, so nothing was trimmed: coverage is 1..last_seq
    assert_coverage(window.segments, last_seq, pinned=1)
    assert window.segments[1] == {
        "type": "summary",
        "from_seq": 2,
        "to_seq": window.segments[1]["to_seq"],
    }
    page = await engine.list_summaries("long")
    assert len(page.summaries) >= 3 and page.next_cursor is None
    newest = page.summaries[0]
    assert [r.version for r in page.summaries] == sorted(
        (r.version for r in page.summaries), reverse=True
    )
    assert all(r.from_seq == 2 for r in page.summaries)  # each folds the previous one in
    assert (newest.provider, newest.model) == ("openai", "gpt-test")
    assert newest.message == window.messages[1] and SUMMARY_TEXT in newest.message.parts[0]["text"]
    assert newest.token_count == fake.requests[-1].turn.completion_tokens  # type: ignore[union-attr]
    assert len(newest.prompt_sha256) == 64
    # what the model was asked
    asked = fake.requests_for("openai_chat")
    assert len(asked) == len(page.summaries)
    assert asked[-1].json["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert asked[-1].json["model"] == "gpt-test"
    assert (
        f"<previous_summary>\n{SUMMARY_TEXT}\n</previous_summary>"
        in asked[-1].json["messages"][1]["content"]
    )
    assert asked[-1].headers["authorization"] == "Bearer sk-test"
    # the tool pair guarantee at the summary boundary: the first live message is no result
    assert window.messages[2].role != "tool"
    # paging
    first = await engine.list_summaries("long", limit=1)
    second = await engine.list_summaries("long", limit=1, cursor=first.next_cursor)
    assert [first.summaries[0].version, second.summaries[0].version] == [
        r.version for r in page.summaries[:2]
    ]


async def test_anthropic_provider(
    engine: Engine, fake: FakeUpstream, summarizer: Summarizer
) -> None:
    await engine.put_context(
        "a",
        token_budget=400,
        trigger_ratio=0.5,
        policy=policy(provider="anthropic", model="claude-test", max_summary_tokens=200),
    )
    for i in range(12):
        await engine.append("a", turn(i))
        await summarizer.idle()
    record = (await engine.list_summaries("a")).summaries[0]
    asked = fake.requests_for("anthropic")[-1]
    assert asked.json["system"] == SYSTEM_PROMPT and asked.json["max_tokens"] == 200
    assert asked.json["model"] == "claude-test" and asked.headers.get("x-api-key") in (
        "sk-test",
        None,
    )
    assert (record.provider, record.model) == ("anthropic", "claude-test")
    assert record.token_count == asked.turn.completion_tokens  # type: ignore[union-attr]
    await assert_guarantees(engine, "a")


async def test_appends_never_wait_for_a_summary_in_flight(engine: Engine) -> None:
    gate = asyncio.Event()
    model = StubModel(gate=gate)
    async with Summarizer(engine, model, FAST) as summarizer:
        await engine.put_context(
            "f", token_budget=500, trigger_ratio=0.5, policy=policy(keep_last=3)
        )
        i = 0
        while model.active == 0:  # until a summary request is in flight
            await engine.append("f", turn(i))
            i += 1
            await asyncio.sleep(0.01)
        for j in range(i, i + 40):  # far past the budget: trimming keeps it
            await engine.append("f", turn(j))
            await assert_guarantees(engine, "f")
        assert model.active == 1 and summarizer.busy  # still in flight, all appends done
        assert (await engine.list_summaries("f")).summaries == []
        gate.set()
        await summarizer.idle()
    assert model.most_active == 1
    assert (await engine.list_summaries("f")).summaries
    await assert_guarantees(engine, "f")


async def test_upstream_failures_then_recovery(engine: Engine, fake: FakeUpstream) -> None:
    fake.script(*[ErrorReply(500)] * 4, protocol="openai_chat")
    released = asyncio.Event()
    backoffs: list[float] = []

    async def held_sleep(delay: float) -> None:  # the backoff, held until the test says so
        backoffs.append(delay)
        await released.wait()

    summarizer = Summarizer(engine, model_for(fake), FAST, sleep=held_sleep)
    async with summarizer:
        await engine.put_context(
            "u", token_budget=500, trigger_ratio=0.5, policy=policy(keep_last=3)
        )
        i = 0
        while not backoffs:  # until the first request failed
            await engine.append("u", turn(i))
            i += 1
            await asyncio.sleep(0.01)
        for j in range(i, i + 40):  # appends go on while the summariser is failing
            await engine.append("u", turn(j))
            await assert_guarantees(engine, "u")
        assert (await engine.list_summaries("u")).summaries == []
        released.set()
        await summarizer.idle()
    statuses = [r.status for r in fake.requests_for("openai_chat")]
    assert statuses == [500, 500, 500, 500, 200]
    assert backoffs[0] < backoffs[1] < backoffs[2]  # exponential
    assert summarizer.failures == 4 and summarizer.summaries == 1
    assert (await engine.list_summaries("u")).summaries
    await assert_guarantees(engine, "u")


async def test_gives_up_after_max_attempts_and_trimming_stays_in_charge(
    engine: Engine, fake: FakeUpstream, summarizer: Summarizer
) -> None:
    fake.default_reply = Reply(error=ErrorReply(503))
    await engine.put_context("g", token_budget=300, trigger_ratio=0.5, policy=policy(keep_last=2))
    for i in range(8):
        await engine.append("g", turn(i))
    await summarizer.idle()
    assert len(fake.requests) <= FAST.max_attempts * 8  # bounded, per wake-up
    assert (await engine.list_summaries("g")).summaries == []
    await assert_guarantees(engine, "g")


async def test_a_client_error_is_not_retried(
    engine: Engine, fake: FakeUpstream, summarizer: Summarizer
) -> None:
    fake.script(ErrorReply(400), protocol="openai_chat")
    await engine.put_context(
        "b", token_budget=10_000, trigger_ratio=0.01, policy=policy(keep_last=1)
    )
    await engine.append_batch("b", [turn(0), turn(1), turn(2)])  # one wake-up
    await summarizer.idle()
    assert [r.status for r in fake.requests] == [400]
    assert (await engine.list_summaries("b")).summaries == []
    await engine.append("b", turn(3))  # the next wake-up tries again
    await summarizer.idle()
    assert [r.status for r in fake.requests] == [400, 200]


async def test_without_a_server_key_it_logs_once_and_trims(
    engine: Engine, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fastpaca.summarizer")
    async with Summarizer(engine, model_for(fake, key=None), FAST) as summarizer:
        await engine.put_context(
            "k", token_budget=300, trigger_ratio=0.5, policy=policy(keep_last=2)
        )
        for i in range(30):
            await engine.append("k", turn(i))
            await summarizer.idle()
            await assert_guarantees(engine, "k")
    assert fake.requests == []
    warnings = [r for r in caplog.records if "API key" in r.getMessage()]
    assert len(warnings) == 1
    assert (await engine.list_summaries("k")).summaries == []
