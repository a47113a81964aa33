"""Property: a summary leaves no hole before its end, whatever trimming did first.

Random conversations with system notes mid-way, a summariser that runs after
some appends and not others: right after a swap, every seq up to the
summary's ``to_seq`` is in the window or in the summary.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.test_policy_properties import Msg, conversations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpaca_core import Engine, open_store
from fastpaca_core.summarizer import Summarizer

from .support import FAST, StubModel, policy

NOTE: dict[str, Any] = {
    "role": "system",
    "parts": [{"type": "text", "text": "note"}],
    "token_count": 5,
}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    log=conversations(),
    budget=st.integers(80, 400),
    trigger=st.floats(0.2, 1.0),
    keep_last=st.integers(1, 6),
    notes=st.lists(st.integers(1, 20), min_size=1, max_size=4),
    runs=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_a_summary_leaves_no_hole_before_its_end(
    log: list[Msg],
    budget: int,
    trigger: float,
    keep_last: int,
    notes: list[int],
    runs: list[bool],
) -> None:
    log = list(log)
    for at in sorted(notes, reverse=True):
        if at < len(log):
            log.insert(at, NOTE)

    async def run() -> None:
        async with open_store("memory://") as store:
            engine = Engine(store)
            summarizer = Summarizer(engine, StubModel(text="short"), FAST)
            await engine.put_context(
                "p", token_budget=budget, trigger_ratio=trigger, policy=policy(keep_last=keep_last)
            )
            for index, message in enumerate(log):
                await engine.append("p", message)
                if not runs[index % len(runs)]:
                    continue
                record = await summarizer.summarize("p")
                ctx = await engine.get_context("p")
                if record is None or record.version != ctx.version:
                    continue  # nothing swapped in, or trimmed right after
                segments = (await engine.window("p")).segments
                seqs = [s for seg in segments for s in range(seg["from_seq"], seg["to_seq"] + 1)]
                assert seqs == sorted(set(seqs)), segments
                upto = record.to_seq
                assert [s for s in seqs if s <= upto] == list(range(1, upto + 1)), segments

    asyncio.run(run())
