"""One summary request carries at most ``max_input_tokens`` tokens of transcript,
even when a single message (an agent step with many tool outputs) is larger."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fastpaca_core import Engine, open_store
from fastpaca_core.summarizer import Summarizer
from fastpaca_proxy.fake_upstream import FakeUpstream

from .support import FAST, assert_guarantees, model_for, policy, text, turn

LIMIT = 4000


def agent_step(steps: int, output: str) -> dict[str, Any]:
    """One assistant message holding ``steps`` finished tool calls."""
    parts = [
        {
            "type": "tool-check",
            "toolCallId": f"c{i}",
            "state": "output-available",
            "input": {"n": i},
            "output": f"{output} {i}",
        }
        for i in range(steps)
    ]
    return {"role": "assistant", "parts": parts}


def transcript_of(request: Any) -> str:
    user = request.json["messages"][1]["content"]
    assert isinstance(user, str)
    return user.split("<transcript>\n", 1)[1].split("\n</transcript>", 1)[0]


@pytest.mark.parametrize("output", ["x" * 3000, "数据" * 1500])
async def test_a_message_larger_than_the_input_limit_is_clipped_to_it(
    fake: FakeUpstream, output: str
) -> None:
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context(
            "c", token_budget=2000, trigger_ratio=0.5, policy=policy(keep_last=2)
        )
        await engine.append("c", text("system", "rules"))
        await engine.append("c", text("user", "run the checks"))
        big = await engine.append("c", agent_step(40, output))
        assert big.token_estimates[0] > 3 * LIMIT
        options = dataclasses.replace(FAST, max_input_tokens=LIMIT)
        async with Summarizer(engine, model_for(fake), options) as summarizer:
            for i in range(40):
                await engine.append("c", turn(i))
                await summarizer.idle()
        asked = fake.requests_for("openai_chat")
        assert asked and all(r.status == 200 for r in asked)
        transcripts = [transcript_of(r) for r in asked]
        for transcript in transcripts:
            assert engine.tokens.count_text(transcript) <= LIMIT
        # the large message was folded (clipped), not skipped
        step = next(t for t in transcripts if "[3] assistant:" in t)
        assert "calls tool check (id c0)" in step and "chars cut]" in step
        window = await engine.window("c")
        assert window.segments[1]["type"] == "summary"
        assert window.segments[1]["from_seq"] == 2
        await assert_guarantees(engine, "c")
