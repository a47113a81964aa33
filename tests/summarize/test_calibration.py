"""Token calibration: provider usage corrects ``used_tokens``, and the budget follows."""

from __future__ import annotations

import math
from pathlib import Path

import openai
import pytest
from proxy.support import OPENAI_MODEL, run_stack

from fastpaca_core import Engine
from fastpaca_core.errors import ValidationError
from fastpaca_core.jsonutil import dumps_str
from fastpaca_core.tokens import TokenCounter
from fastpaca_proxy.adapters import OpenAIChat
from fastpaca_proxy.calibration import estimate_prompt_tokens
from fastpaca_proxy.fake_upstream import RecordedRequest

from .support import text


def sized(i: int, tokens: int = 20) -> dict[str, object]:
    return {**text("user", f"m{i}"), "token_count": tokens}


async def test_usage_moves_the_factor_and_used_tokens(engine: Engine) -> None:
    await engine.put_context("c", token_budget=10_000, policy={"strategy": "manual"})
    await engine.append_batch("c", [sized(i) for i in range(10)])  # 200 estimated
    assert (await engine.window("c")).used_tokens == 200
    assert await engine.record_usage("c", 1000, 1150) == 1.15  # the first sample sets it
    window = await engine.window("c")
    assert (window.used_tokens, window.used_tokens_estimate) == (230, 200)
    assert window.to_json()["used_tokens_estimate"] == 200
    ctx = await engine.get_context("c")
    assert (ctx.calibration, ctx.calibration_samples, ctx.used_tokens) == (1.15, 1, 230)
    factor = await engine.record_usage("c", 1000, 1000)  # the second averages
    assert factor is not None and math.isclose(factor, 1.075)
    for _ in range(30):  # then an EMA that follows a change
        factor = await engine.record_usage("c", 1000, 1300)
    assert factor is not None and math.isclose(factor, 1.3, rel_tol=1e-3)
    assert await engine.record_usage("c", 1000, 100_000) is not None
    assert (await engine.get_context("c")).calibration <= 2.0  # clamped
    assert await engine.record_usage("c", 3, 30) is None  # too small to teach anything


async def test_an_append_carries_a_sample_in_its_own_write(engine: Engine) -> None:
    await engine.put_context("c", token_budget=400, trigger_ratio=0.5)
    await engine.append_batch("c", [sized(i) for i in range(10)])  # 200 of 400: no compaction
    before = await engine.get_context("c")
    result = await engine.append_batch("c", [sized(10)], usage=(1000, 2000))  # 220 x 2 = 440
    ctx = await engine.get_context("c")
    assert (ctx.calibration, ctx.calibration_samples) == (2.0, 1)
    # the policy ran once, after the sample: the window fits the calibrated count
    assert ctx.used_tokens <= 200 and ctx.live_from_seq > before.live_from_seq
    assert result.version == ctx.version and result.used_tokens == ctx.used_tokens
    assert await engine.record_usage("c", 1000, 1000) == 1.5  # the second sample averages
    small = await engine.append_batch("c", [sized(11)], usage=(3, 30))  # teaches nothing
    ctx = await engine.get_context("c")
    assert (ctx.calibration, ctx.calibration_samples, ctx.last_seq) == (1.5, 2, 12)
    assert small.seqs == [12]
    for bad in [(-1, 30), (1000, 2**63), (1000,)]:
        with pytest.raises(ValidationError):
            await engine.append_batch("c", [sized(12)], usage=bad)  # type: ignore[arg-type]
    assert (await engine.get_context("c")).last_seq == 12  # refused whole


async def test_the_budget_holds_against_the_calibrated_count(engine: Engine) -> None:
    await engine.put_context("c", token_budget=400, trigger_ratio=0.5)
    await engine.record_usage("c", 1000, 1600)
    for i in range(60):
        await engine.append("c", sized(i))
        window = await engine.window("c")
        assert window.used_tokens <= 400
        assert window.used_tokens == int(window.used_tokens_estimate * 1.6)
    assert window.used_tokens_estimate <= 250  # 400 / 1.6
    # a budgeted read is in the provider's tokens too
    assert (await engine.window("c", budget_tokens=100)).used_tokens <= 100


async def test_a_higher_factor_trims_at_once(engine: Engine) -> None:
    await engine.put_context("c", token_budget=400, trigger_ratio=0.5)
    await engine.append_batch("c", [sized(i) for i in range(18)])  # 360 of 400
    version = (await engine.get_context("c")).version
    await engine.record_usage("c", 1000, 1500)  # 540 by the provider's count
    ctx = await engine.get_context("c")
    assert ctx.used_tokens <= 200 and ctx.version == version + 1  # one compaction


def test_used_tokens_follows_a_provider_counting_15_percent_more(tmp_path: Path) -> None:
    counter = TokenCounter()
    chat = OpenAIChat()

    def provider_count(request: RecordedRequest) -> int:
        return math.ceil(1.15 * estimate_prompt_tokens(counter, chat, request.json))

    with run_stack(f"sqlite:///{tmp_path / 'cal.db'}") as stack:
        stack.fake.prompt_tokens = provider_count
        stack.api.put("/v1/contexts/cal", json={"token_budget": 100_000}).raise_for_status()
        sdk = stack.track(
            openai.OpenAI(base_url=stack.openai_url("cal"), api_key="sk", max_retries=0)
        )
        for i in range(6):
            question = f"question {i}: " + "tell me about tokens " * 10
            sdk.chat.completions.create(
                model=OPENAI_MODEL, messages=[{"role": "user", "content": question}]
            )
        for _ in range(200):  # calibration runs in the background
            window = stack.window("cal")
            if window["used_tokens"] != window["used_tokens_estimate"]:
                break
        last = stack.fake.last
        reported = last.turn.prompt_tokens  # type: ignore[union-attr]
        counts = [m["token_count"] for m in stack.log("cal")]
    assert reported == math.ceil(1.15 * estimate_prompt_tokens(counter, chat, last.json))
    # the last prompt by our count: its messages as stored (all but its reply; the
    # replies as the provider counted them), and the rest of the request
    rest = {k: v for k, v in last.json.items() if k != "messages"}
    sent = sum(counts[:-1]) + counter.count_text(dumps_str([rest, []]))
    factor = window["used_tokens"] / window["used_tokens_estimate"]
    assert abs(factor * sent - reported) <= 0.02 * reported
