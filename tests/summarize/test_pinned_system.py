"""Which system messages a fold leaves pinned: the log's own leading ones only.

A system message further on in the conversation (a note an app adds) can
come to the front of the window when trimming cuts the messages before it;
the fold must still read those messages back, or they are in neither the
window nor any summary.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastpaca_core import Engine, open_store
from fastpaca_core.summarizer import Summarizer

from .support import FAST, StubModel, assert_coverage, assert_guarantees, policy, text


def sized(message: dict[str, Any], tokens: int = 20) -> dict[str, Any]:
    return {**message, "token_count": tokens}


def chat(i: int) -> dict[str, Any]:
    return sized(text("user" if i % 2 else "assistant", f"m{i}"))


@pytest.mark.parametrize("leading_system", [True, False])
async def test_a_system_note_trimming_brought_forward_is_folded_with_what_preceded_it(
    leading_system: bool,
) -> None:
    first = [sized(text("system", "rules"))] if leading_system else []
    pinned = len(first)
    opening = [
        sized(text("user", "my order number is 4711"), 60),
        sized(text("assistant", "ok"), 60),
    ]
    note = sized(text("system", "note: the user is on the free plan"))
    async with open_store("memory://") as store:
        engine = Engine(store)
        await engine.put_context(
            "c", token_budget=200, trigger_ratio=0.5, policy=policy(keep_last=2)
        )
        await engine.append_batch("c", [*first, *opening, note])
        i = 0
        while len((await engine.window("c")).segments) == 1:  # until trimming cuts
            await engine.append("c", chat(i))
            i += 1
        trimmed = await engine.window("c")
        # trimming cut the opening exchange: the note is now right after the pinned part
        assert trimmed.messages[pinned].parts == note["parts"]
        assert [s["from_seq"] for s in trimmed.segments][pinned:][:1] == [pinned + 3]
        model = StubModel()
        async with Summarizer(engine, model, FAST) as summarizer:
            await engine.append("c", chat(i))
            await summarizer.idle()
        window = await engine.window("c")
        ctx = await engine.get_context("c")
        assert_coverage(window.segments, ctx.last_seq, pinned=pinned)
        assert window.segments[pinned]["type"] == "summary"
        assert window.segments[pinned]["from_seq"] == pinned + 1
        transcript = model.prompts[0].user
        assert f"[{pinned + 1}] user: my order number is 4711" in transcript
        assert f"[{pinned + 3}] system: note: the user is on the free plan" in transcript
        await assert_guarantees(engine, "c")
