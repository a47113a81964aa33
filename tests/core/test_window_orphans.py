"""A pending tool result whose call a compaction cut from the window (the
proxy's turn in flight), and a pending turn cut to the budget, on every store.

The call is read back from the log and sent with its result, even over the
budget (the turn in flight must be answerable); a result whose call the log's
newest rows do not hold either is left out, never sent alone; and only the
newest ``keep_pending`` pending messages are never cut.
"""

from __future__ import annotations

from typing import Any

from fastpaca_core import Engine

from .helpers import call, result, text


def parallel_call(*call_ids: str, token_count: int) -> dict[str, Any]:
    parts = [
        {"type": "tool-search", "toolCallId": i, "state": "input-available", "input": {"q": i}}
        for i in call_ids
    ]
    return {"role": "assistant", "parts": parts, "token_count": token_count}


async def big_call_cut(engine: Engine, context_id: str) -> None:
    """Budget 60: a user message, then a call alone over the budget; the
    policy leaves only the user's request, pinned (the call is in the log only)."""
    await engine.put_context(context_id, token_budget=60)
    await engine.append(context_id, text("user", "find it", token_count=10))
    await engine.append(context_id, call("big", token_count=375))
    assert shape(await engine.window(context_id)) == [("user", 1, False)]


def shape(window: Any) -> list[tuple[str, int, bool]]:
    return [(item.role, item.from_seq, item.in_log) for item in window.items]


async def test_a_small_result_brings_its_call_back_from_the_log(engine: Engine) -> None:
    await big_call_cut(engine, "c")
    window = await engine.window("c", pending=[result("big", token_count=5)])
    assert shape(window) == [("assistant", 2, True), ("tool", 3, False)]
    assert window.items[0].message.parts[0]["toolCallId"] == "big"
    assert window.segments == [{"type": "live", "from_seq": 2, "to_seq": 3}]
    assert window.used_tokens == 380  # over the budget: the turn in flight is sent whole
    assert (await engine.get_context("c")).last_seq == 2  # nothing stored


async def test_a_result_over_the_budget_is_sent_with_its_call(engine: Engine) -> None:
    """Was ValueError (``max()`` of nothing) once the orphan result was dropped."""
    await big_call_cut(engine, "c")
    window = await engine.window("c", pending=[result("big", token_count=200)])
    assert shape(window) == [("assistant", 2, True), ("tool", 3, False)]
    # the same under a read's own budget
    window = await engine.window("c", budget_tokens=30, pending=[result("big", token_count=20)])
    assert shape(window) == [("assistant", 2, True), ("tool", 3, False)]


async def test_the_pair_follows_the_pinned_system_message(engine: Engine) -> None:
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5)
    await engine.append("c", text("system", "sys", token_count=5))
    await engine.append("c", text("user", "one", token_count=20))
    await engine.append("c", text("assistant", "two", token_count=20))
    await engine.append("c", call("k", token_count=150))  # cut: alone over the budget
    window = await engine.window("c")
    assert [item.from_seq for item in window.items] == [1, 2]  # the request is pinned
    pending = [result("k", token_count=5), text("user", "and?", token_count=5)]
    window = await engine.window("c", pending=pending)
    assert shape(window) == [
        ("system", 1, False),  # pinned
        ("assistant", 4, True),
        ("tool", 5, False),
        ("user", 6, False),
    ]


async def test_parallel_results_bring_the_rows_from_their_call_on(engine: Engine) -> None:
    """The call row is not the newest row: a result stored since is read back too,
    in log order (one wider read)."""
    await engine.put_context("c", token_budget=60)
    await engine.append("c", text("user", "look both up", token_count=10))
    await engine.append_batch(
        "c", [parallel_call("a", "b", token_count=300), result("a", token_count=5)]
    )
    assert shape(await engine.window("c")) == [("user", 1, False)]  # the request, pinned
    window = await engine.window("c", pending=[result("b", token_count=5)])
    assert shape(window) == [("assistant", 2, True), ("tool", 3, True), ("tool", 4, False)]


async def test_a_result_whose_call_the_log_lacks_is_left_out(engine: Engine) -> None:
    await engine.put_context("c", token_budget=60)
    await engine.append("c", text("user", "hi", token_count=10))
    pending = [result("ghost", token_count=5), text("user", "next", token_count=5)]
    window = await engine.window("c", pending=pending)
    assert shape(window) == [("user", 1, True), ("user", 3, False)]
    assert window.used_tokens == 15
    # alone, and over the budget: nothing left to send of it, and no error
    window = await engine.window("c", pending=[result("ghost", token_count=500)])
    assert shape(window) == [("user", 1, True)]


async def test_only_the_newest_pending_messages_are_kept_whatever_the_budget(
    engine: Engine,
) -> None:
    """History the log does not hold (a client new to the proxy) is cut like log rows."""
    await engine.put_context("c", token_budget=100)
    await engine.append("c", text("user", "stored", token_count=10))
    pending = [
        text("user" if i % 2 == 0 else "assistant", f"m{i}", token_count=30) for i in range(10)
    ]
    window = await engine.window("c", pending=pending, keep_pending=1)
    assert [item.from_seq for item in window.items] == [9, 10, 11]  # the newest that fit
    assert window.used_tokens == 90
    # the kept messages are kept even over the budget
    window = await engine.window("c", pending=pending, keep_pending=4)
    assert [item.from_seq for item in window.items] == [8, 9, 10, 11]
    # by default, every pending message is kept
    window = await engine.window("c", pending=pending)
    assert len(window.items) == 10


async def test_a_kept_result_keeps_its_call_among_older_pending_messages(engine: Engine) -> None:
    await engine.put_context("c", token_budget=100)
    await engine.append("c", text("user", "stored", token_count=10))
    pending = [
        text("user", "old", token_count=60),
        call("k", token_count=40),
        result("k", token_count=40),
    ]
    window = await engine.window("c", pending=pending, keep_pending=1)
    assert [item.role for item in window.items] == ["assistant", "tool"]
    assert window.used_tokens == 80
