"""Regressions: inputs that once broke the window's guarantees (API.md Part 2),
on every store.

- a tool result for a call the window never held stays out of the window;
- a message rewritten to less (orphan results or skipped parts taken out)
  never counts more tokens than it did;
- a user request pinned by a cut never brings along a result whose call
  the cut took away;
- ``skip_parts`` leaves the leading system messages whole;
- ``needs_compaction`` and the trigger compare with ``token_budget *
  trigger_ratio`` as the decimal figures mean it, not as floating point
  rounds it.
"""

from __future__ import annotations

from typing import Any

from fastpaca_core import Engine

from .helpers import call, result, text


def shape(window: Any) -> list[tuple[str, int]]:
    return [(item.role, item.from_seq) for item in window.items]


def result_ids(window: Any) -> list[str]:
    return [
        part["toolCallId"]
        for item in window.items
        for part in item.message.parts
        if part["type"] == "tool-result"
    ]


async def test_a_result_for_a_call_never_made_is_not_left_at_the_start(engine: Engine) -> None:
    """Was: the window (and so the next proxied prompt) started with the orphan
    tool message, which every provider refuses."""
    await engine.put_context("c", token_budget=1000)
    await engine.append("c", result("nope", token_count=5))
    window = await engine.window("c")
    assert shape(window) == []
    assert window.used_tokens == 0
    await engine.append("c", text("user", "hi", token_count=3))
    window = await engine.window("c", pending=[text("user", "more", token_count=3)])
    assert shape(window) == [("user", 2), ("user", 3)]
    assert len(await engine.tail("c")) == 2  # the log keeps it


async def test_a_result_for_an_unknown_call_leaves_the_rest_of_its_message(engine: Engine) -> None:
    await engine.put_context("c", token_budget=1000)
    await engine.append("c", call("a", token_count=5))
    mixed = {
        "role": "user",
        "parts": [
            {"type": "tool-result", "toolCallId": "a", "toolName": "weather", "output": 1},
            {"type": "tool-result", "toolCallId": "zz", "toolName": "weather", "output": 2},
            {"type": "text", "text": "and now?"},
        ],
        "token_count": 9,
    }
    await engine.append("c", mixed)
    window = await engine.window("c")
    assert shape(window) == [("assistant", 1), ("user", 2)]
    assert result_ids(window) == ["a"]
    assert window.used_tokens == 5 + 6  # two of its three parts
    # the result's call is the row right before: nothing is rewritten
    await engine.append("c", call("b", token_count=5))
    await engine.append("c", result("b", token_count=5))
    assert shape(await engine.window("c"))[-2:] == [("assistant", 3), ("tool", 4)]
    assert (await engine.window("c")).items[-1].in_log


async def test_a_zero_token_message_rewritten_stays_at_zero(engine: Engine) -> None:
    """Was: a 0-token message with an orphan result taken out counted 1 token
    (any rewrite counted at least 1), more than it did whole."""
    await engine.put_context("c", token_budget=100)
    await engine.append("c", text("user", "hi", token_count=5))
    mixed = {
        "role": "user",
        "parts": [
            {"type": "tool-result", "toolCallId": "zz", "toolName": "weather", "output": 1},
            {"type": "text", "text": "x"},
        ],
        "token_count": 0,
    }
    window = await engine.window("c", pending=[mixed])
    assert shape(window) == [("user", 1), ("user", 2)]
    assert result_ids(window) == []
    assert [item.tokens for item in window.items] == [5, 0]
    assert window.used_tokens == 5


async def test_a_pinned_request_never_brings_a_result_without_its_call(engine: Engine) -> None:
    """Was: the cut kept the user request and, after it, a tool result whose
    call (before the request) it dropped: a split pair, and an orphan."""
    policy = {"strategy": "last_n", "config": {"limit": 3}}
    await engine.put_context("c", token_budget=1, trigger_ratio=0.2, policy=policy)
    await engine.append("c", call("a", token_count=1))
    await engine.append("c", text("user", "u", token_count=0))
    await engine.append("c", result("a", token_count=0))
    await engine.append("c", text("assistant", "done", token_count=0))
    window = await engine.window("c")
    assert result_ids(window) == []
    assert ("tool", 3) not in shape(window)
    assert shape(window)[-1] == ("assistant", 4)


async def test_a_pinned_request_with_a_budget_override_keeps_pairs(engine: Engine) -> None:
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append("c", call("a", token_count=30))
    await engine.append("c", text("user", "u", token_count=5))
    await engine.append("c", result("a", token_count=5))
    for i in range(4):
        await engine.append("c", text("assistant", f"a{i}", token_count=5))
    window = await engine.window("c", budget_tokens=35)
    assert result_ids(window) == []
    assert shape(window) == [("user", 2), *(("assistant", seq) for seq in range(4, 8))]


async def test_skip_parts_keeps_the_leading_system_messages_whole(engine: Engine) -> None:
    """Was: ``skip_kinds`` matching a system message's parts (``text``, ``file``)
    emptied it, and the pinned system prompt left the window."""
    policy = {"strategy": "skip_parts", "config": {"limit": 100, "skip_kinds": ["file"]}}
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5, policy=policy)
    image = {"type": "file", "mediaType": "image/png", "url": "https://example.com/a.png"}
    system = {
        "role": "system",
        "parts": [{"type": "text", "text": "look at this"}, image],
        "token_count": 20,
    }
    await engine.append("c", system)
    await engine.append("c", text("user", "one", token_count=10))
    await engine.append("c", {"role": "user", "parts": [image], "token_count": 30})
    await engine.append("c", text("assistant", "a picture", token_count=10))
    await engine.append("c", text("user", "two", token_count=40))  # 110: over the budget
    window = await engine.window("c")
    assert (window.items[0].from_seq, window.items[0].role) == (1, "system")
    assert window.items[0].message.parts == system["parts"]
    assert window.items[0].tokens == 20
    assert ("user", 3) not in shape(window)  # a message of skipped parts only: gone


async def test_needs_compaction_exactly_at_the_trigger_level(engine: Engine) -> None:
    """Was: 100 * 0.57 is 56.99999999999999 in floating point, so 57 tokens
    were over a trigger level of 57: ``needs_compaction`` was true, and the
    policy cut a window that was exactly at its trigger level."""
    policy = {"strategy": "last_n", "config": {"limit": 1}}
    await engine.put_context("c", token_budget=100, trigger_ratio=0.57, policy=policy)
    await engine.append("c", text("user", "one", token_count=50))
    await engine.append("c", text("user", "two", token_count=7))
    window = await engine.window("c")
    assert window.used_tokens == 57
    assert window.needs_compaction is False
    assert shape(window) == [("user", 1), ("user", 2)]
    await engine.append("c", text("user", "three", token_count=1))
    window = await engine.window("c")
    assert window.needs_compaction is False  # the cut went to the newest message
    assert shape(window) == [("user", 3)]


async def test_needs_compaction_at_the_level_of_a_budget_override(engine: Engine) -> None:
    await engine.put_context("c", trigger_ratio=0.29, policy={"strategy": "manual"})
    await engine.append("c", text("user", "one", token_count=29))
    assert (await engine.window("c", budget_tokens=100)).needs_compaction is False
    assert (await engine.window("c", budget_tokens=99)).needs_compaction is True


async def test_a_result_before_its_call_in_one_batch_is_an_orphan(engine: Engine) -> None:
    """Was: the check for the result's call looked at the whole window, the
    call appended after the result too, and kept the orphan at the start."""
    await engine.put_context("c", token_budget=1000)
    early = {
        "role": "user",
        "parts": [
            {"type": "tool-result", "toolCallId": "a", "toolName": "weather", "output": 1},
            {"type": "text", "text": "hello"},
        ],
        "token_count": 6,
    }
    await engine.append_batch("c", [early, call("a", token_count=5)])
    window = await engine.window("c")
    assert shape(window) == [("user", 1), ("assistant", 2)]
    assert result_ids(window) == []
    assert window.used_tokens == 3 + 5


async def test_a_pending_result_of_a_reused_id_after_its_pending_call_is_sent(
    engine: Engine,
) -> None:
    """Servers that number calls per turn reuse ids (``call_0``). Was: a pending
    result whose call was not found took every pending result of that id with
    it, also the one answering a pending call of the same id: that call went
    upstream without its result."""
    await engine.put_context("c", token_budget=1000)
    await engine.append("c", text("user", "hi", token_count=3))
    pending = [
        result("call_0", token_count=4),  # its call is nowhere: left out
        call("call_0", token_count=5),
        result("call_0", token_count=6),
    ]
    window = await engine.window("c", pending=pending)
    assert shape(window) == [("user", 1), ("assistant", 3), ("tool", 4)]
    assert result_ids(window) == ["call_0"]
    assert window.used_tokens == 3 + 5 + 6


async def test_a_system_message_brought_to_the_front_does_not_crowd_out_the_newest(
    engine: Engine,
) -> None:
    """Was: once a cut took the messages before a mid-conversation system
    message, it was pinned like the log's leading ones, and the newest user
    message was dropped to keep it."""
    policy = {"strategy": "last_n", "config": {"limit": 1}}
    await engine.put_context("c", token_budget=96, trigger_ratio=0.2, policy=policy)
    await engine.append("c", text("system", "You are terse.", token_count=76))
    await engine.append("c", text("user", "hi", token_count=1))
    await engine.append("c", text("system", "The user is on mobile.", token_count=20))
    assert shape(await engine.window("c")) == [("system", 1), ("system", 3)]
    await engine.append("c", text("user", "what now?", token_count=1))
    window = await engine.window("c")
    assert shape(window)[0] == ("system", 1)
    assert shape(window)[-1] == ("user", 4)
    assert window.used_tokens <= 96


async def test_a_call_read_back_for_a_pending_result_comes_without_its_orphans(
    engine: Engine,
) -> None:
    """Was: the call's log row came back whole, with a result in it whose call
    the log never held, and that orphan went upstream."""
    await engine.put_context("c", token_budget=1)
    row = {
        "role": "assistant",
        "parts": [
            {"type": "text", "text": "checking"},
            {"type": "tool-weather", "toolCallId": "a", "state": "input-available", "input": {}},
            {"type": "tool-result", "toolCallId": "b", "toolName": "weather", "output": 1},
        ],
        "token_count": 3,
    }
    await engine.append("c", row)
    assert shape(await engine.window("c")) == []  # over the budget
    window = await engine.window("c", pending=[result("a", token_count=0)], budget_tokens=3)
    assert shape(window) == [("assistant", 1), ("tool", 2)]
    assert result_ids(window) == ["a"]


async def test_results_sent_one_per_message_keep_their_calls_near_and_far(
    engine: Engine,
) -> None:
    """An append of results looks for their calls in the rows just before it,
    then in the whole window: results of parallel calls sent one per message
    (their call a few rows back), and one whose call is further back than
    that look, all stay beside their calls."""
    await engine.put_context("c", token_budget=100_000)
    many = {
        "role": "assistant",
        "parts": [call(f"p{i}")["parts"][0] for i in range(20)],
    }
    await engine.append("c", text("user", "weather everywhere", token_count=3))
    await engine.append("c", many)
    for i in range(20):  # the 20th result's call is 20 rows back
        await engine.append("c", result(f"p{i}", token_count=2))
    window = await engine.window("c")
    assert result_ids(window) == [f"p{i}" for i in range(20)]
    assert [role for role, _ in shape(window)] == ["user", "assistant", *["tool"] * 20]
    await engine.append("c", result("never-made", token_count=2))  # an orphan still goes
    assert result_ids(await engine.window("c")) == [f"p{i}" for i in range(20)]
