"""The store conformance suite: every engine operation over every backend.

Each test runs on memory, SQLite (a file) and Postgres (its own schema).
"""

from __future__ import annotations

import asyncio

import pytest

from fastpaca_core import (
    ContextNotFound,
    ContextTombstoned,
    Engine,
    IdempotencyKeyReused,
    Store,
    ValidationError,
    VersionConflict,
    open_store,
)

from .helpers import call, result, text


async def test_create_defaults_and_idempotent_put(engine: Engine) -> None:
    ctx = await engine.put_context("chat-1")
    body = ctx.to_json()
    assert body["token_budget"] == 8000
    assert body["trigger_ratio"] == 0.7
    assert body["policy"] == {"strategy": "last_n", "config": {"limit": 200}}
    assert body["metadata"] == {}
    assert body["status"] == "active"
    assert body["version"] == 0
    assert body["last_seq"] == 0
    assert body["created_at"].endswith("Z")
    again = await engine.put_context("chat-1")
    assert again.to_json() == body
    fetched = await engine.get_context("chat-1")
    assert fetched.to_json() == body


async def test_put_updates_only_given_fields(engine: Engine) -> None:
    await engine.put_context("c", token_budget=500, metadata={"a": 1})
    updated = await engine.put_context("c", trigger_ratio=0.5)
    assert updated.token_budget == 500
    assert updated.trigger_ratio == 0.5
    assert updated.metadata == {"a": 1}
    updated = await engine.put_context(
        "c", policy={"strategy": "skip_parts", "config": {"limit": 10}}
    )
    assert updated.policy.strategy == "skip_parts"
    assert updated.policy.config == {"limit": 10, "skip_kinds": ["tool", "reasoning"]}
    assert (await engine.get_context("c")).policy == updated.policy


async def test_get_missing_context(engine: Engine) -> None:
    with pytest.raises(ContextNotFound):
        await engine.get_context("nope")
    with pytest.raises(ContextNotFound):
        await engine.append("nope", text("user", "hi"))
    with pytest.raises(ContextNotFound):
        await engine.window("nope")
    with pytest.raises(ContextNotFound):
        await engine.tail("nope")


async def test_append_assigns_gapless_seqs_and_versions(engine: Engine) -> None:
    await engine.put_context("c")
    first = await engine.append("c", text("user", "hello"))
    assert (first.seqs, first.version) == ([1], 1)
    assert first.token_estimates[0] > 4
    second = await engine.append("c", text("assistant", "hi", token_count=42))
    assert (second.seqs, second.version, second.token_estimates) == ([2], 2, [42])
    assert second.to_json() == {"seq": 2, "version": 2, "token_estimate": 42}
    ctx = await engine.get_context("c")
    assert (ctx.last_seq, ctx.version) == (2, 2)


async def test_message_round_trip_keeps_unknown_keys(engine: Engine) -> None:
    await engine.put_context("c")
    parts = [
        {"type": "text", "text": "é ☃ 𝄞", "providerMetadata": {"x": [1, 2.5, None, True]}},
        {"type": "data-weather", "id": "w1", "data": {"z": 1, "a": 2}},
        {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"},
        {"type": "step-start"},
    ]
    await engine.append("c", {"role": "user", "parts": parts, "metadata": {"k": "v"}})
    (stored,) = await engine.tail("c")
    assert stored.parts == parts
    assert [list(p) for p in stored.parts] == [list(p) for p in parts]  # key order kept
    body = stored.to_json()
    assert body["metadata"] == {"k": "v"}
    assert body["seq"] == 1
    assert body["inserted_at"].endswith("Z")


async def test_batch_append_is_atomic_with_consecutive_seqs(engine: Engine) -> None:
    await engine.put_context("c")
    await engine.append("c", text("user", "one"))
    res = await engine.append_batch("c", [text("user", "two"), text("assistant", "three")])
    assert res.seqs == [2, 3]
    assert res.version == 3
    assert res.to_json(batch=True)["messages"][1]["seq"] == 3
    with pytest.raises(ValidationError):
        await engine.append_batch("c", [text("user", "ok"), {"role": "bogus", "parts": []}])
    assert (await engine.get_context("c")).last_seq == 3


async def test_if_version_conflict_carries_expected_and_found(engine: Engine) -> None:
    await engine.put_context("c")
    await engine.append("c", text("user", "a"), if_version=0)
    with pytest.raises(VersionConflict) as info:
        await engine.append("c", text("user", "b"), if_version=0)
    assert (info.value.expected, info.value.found) == (0, 1)
    assert str(info.value) == "Context version changed (expected 0, found 1)"
    with pytest.raises(VersionConflict):
        await engine.window("c", if_version=7)
    with pytest.raises(VersionConflict):
        await engine.compact("c", [text("system", "s")], if_version=0)
    assert (await engine.get_context("c")).last_seq == 1


async def test_idempotent_retry_writes_nothing(engine: Engine) -> None:
    await engine.put_context("c")
    first = await engine.append("c", text("user", "a"), idempotency_key="k1")
    retry = await engine.append("c", text("user", "a"), idempotency_key="k1")
    assert (retry.seqs, retry.version, retry.token_estimates) == (
        first.seqs,
        first.version,
        first.token_estimates,
    )
    assert retry.replayed
    assert (await engine.get_context("c")).last_seq == 1
    with pytest.raises(IdempotencyKeyReused):
        await engine.append("c", text("user", "other"), idempotency_key="k1")
    # a retry of an if_version append still answers after the version moved on
    await engine.append("c", text("user", "b"), if_version=1, idempotency_key="k2")
    await engine.append("c", text("user", "c"))
    again = await engine.append("c", text("user", "b"), if_version=1, idempotency_key="k2")
    assert again.seqs == [2]
    # keys are per context
    await engine.put_context("d")
    other = await engine.append("d", text("user", "a"), idempotency_key="k1")
    assert other.seqs == [1] and not other.replayed
    assert (await engine.get_context("c")).last_seq == 3


async def test_idempotent_compaction(engine: Engine) -> None:
    await engine.put_context("c")
    await engine.append("c", text("user", "a"))
    v1 = await engine.compact("c", [text("system", "sum")], idempotency_key="x")
    v2 = await engine.compact("c", [text("system", "sum")], idempotency_key="x")
    assert v1 == v2 == 2
    with pytest.raises(IdempotencyKeyReused):
        await engine.compact("c", [text("system", "other")], idempotency_key="x")


async def test_concurrent_idempotent_retries_store_once(engine: Engine) -> None:
    await engine.put_context("c")
    results = await asyncio.gather(
        *(engine.append("c", text("user", "same"), idempotency_key="dup") for _ in range(10))
    )
    assert {r.seqs[0] for r in results} == {1}
    assert (await engine.get_context("c")).last_seq == 1


async def test_tombstone_keeps_history_readable(engine: Engine) -> None:
    await engine.put_context("c")
    await engine.append("c", text("user", "a"))
    await engine.delete_context("c")
    await engine.delete_context("c")  # idempotent
    ctx = await engine.get_context("c")
    assert ctx.status == "tombstoned"
    assert [m.seq for m in await engine.tail("c")] == [1]
    assert len((await engine.window("c")).items) == 1
    with pytest.raises(ContextTombstoned):
        await engine.append("c", text("user", "b"))
    with pytest.raises(ContextTombstoned):
        await engine.compact("c", [])
    tombstoned = await engine.put_context("c", token_budget=10)  # settings stay settable
    assert (tombstoned.status, tombstoned.token_budget) == ("tombstoned", 10)
    with pytest.raises(ContextNotFound):
        await engine.delete_context("missing")
    assert (await engine.get_context("c")).last_seq == 1


async def test_a_retry_after_the_tombstone_still_learns_its_write_was_stored(
    engine: Engine,
) -> None:
    """A client whose write did commit, but who saw only a failure, retries with
    its key after the context was deleted: it hears the first result (the
    write is stored), not a 409; any other write is refused."""
    await engine.put_context("c")
    first = await engine.append("c", text("user", "a"), idempotency_key="k1")
    v_compact = await engine.compact("c", [text("system", "s")], idempotency_key="k2")
    await engine.delete_context("c")
    retry = await engine.append("c", text("user", "a"), idempotency_key="k1")
    assert retry.replayed and (retry.seqs, retry.version) == (first.seqs, first.version)
    assert await engine.compact("c", [text("system", "s")], idempotency_key="k2") == v_compact
    with pytest.raises(ContextTombstoned):
        await engine.append("c", text("user", "a"), idempotency_key="k3")
    with pytest.raises(IdempotencyKeyReused):
        await engine.append("c", text("user", "other"), idempotency_key="k1")
    assert (await engine.get_context("c")).last_seq == 1


async def test_metadata_shallow_merge(engine: Engine) -> None:
    await engine.put_context("c", metadata={"a": 1, "b": {"x": 1}})
    ctx = await engine.update_metadata("c", {"b": {"y": 2}, "c": 3})
    assert ctx.metadata == {"a": 1, "b": {"y": 2}, "c": 3}
    assert (await engine.get_context("c")).metadata == ctx.metadata
    with pytest.raises(ContextNotFound):
        await engine.update_metadata("missing", {"a": 1})


async def test_list_contexts_newest_first_with_cursor(engine: Engine) -> None:
    for name in ("a", "b", "c", "d", "e"):
        await engine.put_context(name)
    await engine.append("b", text("user", "bump"))  # b becomes the most recent
    seen: list[str] = []
    cursor = None
    while True:
        page = await engine.list_contexts(limit=2, cursor=cursor)
        seen.extend(c.id for c in page.contexts)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen[0] == "b"
    assert sorted(seen) == ["a", "b", "c", "d", "e"]
    assert len(seen) == 5
    with pytest.raises(ValidationError):
        await engine.list_contexts(cursor="garbage!")


async def test_tail_pages_backwards(engine: Engine) -> None:
    await engine.put_context("c")
    await engine.append_batch("c", [text("user", str(i)) for i in range(1, 11)])
    assert [m.seq for m in await engine.tail("c", offset=0, limit=3)] == [8, 9, 10]
    assert [m.seq for m in await engine.tail("c", offset=3, limit=3)] == [5, 6, 7]
    assert [m.seq for m in await engine.tail("c", offset=9, limit=3)] == [1]
    assert await engine.tail("c", offset=10, limit=3) == []
    assert [m.seq for m in await engine.messages("c", after_seq=0, limit=4)] == [1, 2, 3, 4]
    assert [m.seq for m in await engine.messages("c", after_seq=8, limit=4)] == [9, 10]
    assert await engine.messages("c", after_seq=10) == []
    for bad in ({"offset": -1}, {"limit": 0}, {"offset": "3"}):
        with pytest.raises(ValidationError):
            await engine.tail("c", **bad)  # type: ignore[arg-type]


async def test_window_no_compaction_is_one_live_segment(engine: Engine) -> None:
    await engine.put_context("c")
    empty = await engine.window("c")
    assert empty.to_json() == {
        "version": 0,
        "messages": [],
        "used_tokens": 0,
        "used_tokens_estimate": 0,
        "needs_compaction": False,
        "segments": [],
    }
    await engine.append("c", text("user", "a", token_count=10))
    await engine.append("c", text("assistant", "b", token_count=15))
    window = (await engine.window("c")).to_json()
    assert window["used_tokens"] == 25
    assert window["segments"] == [{"type": "live", "from_seq": 1, "to_seq": 2}]
    assert [m["seq"] for m in window["messages"]] == [1, 2]
    assert window["messages"][0]["parts"] == [{"type": "text", "text": "a"}]


async def test_needs_compaction_under_manual_policy(engine: Engine) -> None:
    await engine.put_context(
        "c", token_budget=100, trigger_ratio=0.5, policy={"strategy": "manual"}
    )
    await engine.append("c", text("user", "a", token_count=50))
    assert not (await engine.window("c")).needs_compaction
    await engine.append("c", text("user", "b", token_count=1))
    window = await engine.window("c")
    assert window.needs_compaction
    assert window.used_tokens == 51
    await engine.append("c", text("user", "c", token_count=500))
    assert (await engine.window("c")).used_tokens == 551  # manual never compacts


async def test_budget_override_for_one_read(engine: Engine) -> None:
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append("c", text("system", "sys", token_count=5))
    for i in range(10):
        await engine.append("c", text("user", f"m{i}", token_count=10))
    window = await engine.window("c", budget_tokens=40)
    assert window.used_tokens <= 40
    assert window.items[0].message.role == "system"
    assert [i.from_seq for i in window.items] == [1, 9, 10, 11]
    assert window.needs_compaction
    assert (await engine.window("c")).used_tokens == 105


async def test_last_n_policy_keeps_budget_system_and_pairs(engine: Engine) -> None:
    await engine.put_context("c", token_budget=100, trigger_ratio=0.8)
    await engine.append("c", text("system", "be brief", token_count=10))
    for i in range(20):
        await engine.append("c", text("user", f"q{i}", token_count=10))
        await engine.append("c", call(f"call-{i}", token_count=10))
        await engine.append("c", result(f"call-{i}", token_count=10))
        window = await engine.window("c")
        assert window.used_tokens <= 100
        assert window.items[0].message.role == "system"
        assert window.items[1].message.role != "tool"
        ctx = await engine.get_context("c")
        assert window.used_tokens == ctx.used_tokens
    segments = (await engine.window("c")).segments
    assert segments[0] == {"type": "live", "from_seq": 1, "to_seq": 1}
    assert segments[-1]["to_seq"] == 61
    assert (await engine.get_context("c")).last_seq == 61


async def test_last_n_limit(engine: Engine) -> None:
    await engine.put_context(
        "c",
        token_budget=100,
        trigger_ratio=0.1,
        policy={"strategy": "last_n", "config": {"limit": 3}},
    )
    for i in range(6):
        await engine.append("c", text("user", str(i), token_count=3))
    window = await engine.window("c")
    assert [i.from_seq for i in window.items] == [4, 5, 6]
    assert window.segments == [{"type": "live", "from_seq": 4, "to_seq": 6}]


async def test_compaction_cuts_back_under_the_trigger(engine: Engine) -> None:
    await engine.put_context("c", token_budget=100, trigger_ratio=0.5)
    versions = []
    for _ in range(30):
        result = await engine.append("c", text("user", "x", token_count=10))
        versions.append(result.version)
    compactions = sum(1 for a, b in zip(versions, versions[1:], strict=False) if b - a == 2)
    # over the budget (100) every few appends, cut back to <= 50: one run per ~6 appends
    assert 3 <= compactions <= 6
    window = await engine.window("c")
    assert window.used_tokens <= 100


async def test_skip_parts_drops_tool_parts_but_keeps_the_turn_in_flight(engine: Engine) -> None:
    await engine.put_context(
        "c",
        token_budget=65,
        trigger_ratio=0.99,
        policy={"strategy": "skip_parts", "config": {"limit": 50}},
    )
    await engine.append("c", text("user", "weather?", token_count=10))
    await engine.append("c", call("c1", token_count=10))
    await engine.append("c", result("c1", token_count=10))
    await engine.append("c", text("assistant", "3 degrees", token_count=10))
    await engine.append("c", text("user", "and tomorrow?", token_count=10))
    await engine.append("c", call("c2", token_count=10))
    await engine.append("c", result("c2", token_count=10))
    window = await engine.window("c")
    kinds = [[p["type"] for p in item.message.parts] for item in window.items]
    assert kinds == [["text"], ["text"], ["text"], ["tool-weather"], ["tool-result"]]
    assert window.used_tokens == 50


async def test_full_compaction_replaces_window_not_log(engine: Engine) -> None:
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append_batch("c", [text("user", str(i), token_count=10) for i in range(5)])
    version = await engine.compact("c", [text("system", "summary of 1-5", token_count=7)])
    assert version == 6
    window = await engine.window("c")
    assert window.used_tokens == 7
    assert window.segments == [{"type": "summary", "from_seq": 1, "to_seq": 5}]
    assert window.to_json()["messages"][0]["parts"][0]["text"] == "summary of 1-5"
    assert len(await engine.tail("c", limit=100)) == 5
    await engine.append("c", text("user", "new", token_count=3))
    window = await engine.window("c")
    assert window.used_tokens == 10
    assert window.segments[-1] == {"type": "live", "from_seq": 6, "to_seq": 6}


async def test_partial_compaction_keeps_newer_messages_live(engine: Engine) -> None:
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append_batch("c", [text("user", str(i), token_count=10) for i in range(6)])
    await engine.compact("c", [text("assistant", "sum", token_count=4)], up_to_seq=4)
    window = await engine.window("c")
    assert window.segments == [
        {"type": "summary", "from_seq": 1, "to_seq": 4},
        {"type": "live", "from_seq": 5, "to_seq": 6},
    ]
    assert window.used_tokens == 24
    # a second partial compaction folds the first summary in
    await engine.compact("c", [text("assistant", "sum2", token_count=5)], up_to_seq=5)
    window = await engine.window("c")
    assert window.segments == [
        {"type": "summary", "from_seq": 1, "to_seq": 5},
        {"type": "live", "from_seq": 6, "to_seq": 6},
    ]
    with pytest.raises(ValidationError) as info:
        await engine.compact("c", [], up_to_seq=99)
    assert info.value.field == "up_to_seq"


async def test_partial_compaction_never_splits_a_tool_pair(engine: Engine) -> None:
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append_batch("c", [text("user", "q"), call("k"), result("k")])
    before = await engine.get_context("c")
    with pytest.raises(ValidationError):
        await engine.compact("c", [text("system", "s")], up_to_seq=2)
    after = await engine.get_context("c")
    assert after.version == before.version


async def test_partial_compaction_racing_appends_loses_nothing(engine: Engine) -> None:
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append_batch("c", [text("user", str(i), token_count=1) for i in range(20)])
    snapshot = await engine.window("c")
    cover = snapshot.items[-1].from_seq

    async def appender() -> None:
        for i in range(30):
            await engine.append("c", text("user", f"late {i}", token_count=1))

    async def summariser() -> None:
        await asyncio.sleep(0)
        await engine.compact("c", [text("system", "summary", token_count=1)], up_to_seq=cover)

    await asyncio.gather(appender(), summariser())
    window = await engine.window("c")
    ctx = await engine.get_context("c")
    assert ctx.last_seq == 50
    assert window.segments[0] == {"type": "summary", "from_seq": 1, "to_seq": 20}
    live = [i.from_seq for i in window.items if i.kind == "live"]
    assert live == list(range(21, 51))


async def test_fifty_concurrent_appenders_gapless(engine: Engine) -> None:
    await engine.put_context("c")
    results = await asyncio.gather(*(engine.append("c", text("user", f"m{i}")) for i in range(50)))
    seqs = sorted(r.seqs[0] for r in results)
    assert seqs == list(range(1, 51))
    assert len({r.version for r in results}) == 50
    stored = await engine.messages("c", limit=100)
    assert [m.seq for m in stored] == list(range(1, 51))
    assert sorted(m.parts[0]["text"] for m in stored) == sorted(f"m{i}" for i in range(50))


async def test_conflicting_appenders_only_one_wins_per_version(engine: Engine) -> None:
    await engine.put_context("c")
    outcomes = await asyncio.gather(
        *(engine.append("c", text("user", str(i)), if_version=0) for i in range(10)),
        return_exceptions=True,
    )
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(o, VersionConflict) for o in outcomes if o not in wins)
    assert (await engine.get_context("c")).last_seq == 1


async def test_events_published_after_commit(engine: Engine) -> None:
    await engine.put_context("c", token_budget=50, trigger_ratio=0.5)
    with engine.bus.subscribe("c") as sub:
        await engine.append("c", text("user", "a", token_count=30))
        await engine.append("c", text("user", "b", token_count=30))  # over budget: compaction
        await engine.compact("c", [text("system", "s", token_count=1)])
        await engine.put_context("c", metadata={"x": 1})
        await engine.delete_context("c")
        events = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    types = [e.type for e in events]
    assert types == ["message", "message", "compaction", "compaction", "config", "tombstoned"]
    versions = [e.version for e in events if e.type != "config"]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert events[0].to_json()["seq"] == 1
    stored = await engine.store.read_events("c", 0, 100)
    assert [e.type for e in stored] == ["compaction", "compaction", "tombstoned"]


async def test_reopen_keeps_everything(durable_url: str) -> None:
    store_url = durable_url
    async with open_store(store_url) as store:
        engine = Engine(store)
        await engine.put_context("c", token_budget=300, metadata={"a": 1})
        await engine.append("c", text("user", "persist me"), idempotency_key="k")
        await engine.compact("c", [text("system", "sum")], up_to_seq=1)
    async with open_store(store_url) as store:
        engine = Engine(store)
        ctx = await engine.get_context("c")
        assert (ctx.token_budget, ctx.metadata, ctx.last_seq, ctx.version) == (300, {"a": 1}, 1, 2)
        assert (await engine.tail("c"))[0].parts[0]["text"] == "persist me"
        assert (await engine.window("c")).segments == [
            {"type": "summary", "from_seq": 1, "to_seq": 1}
        ]
        replay = await engine.append("c", text("user", "persist me"), idempotency_key="k")
        assert replay.replayed


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_window_with_pending_turn_makes_room_and_keeps_pairs(engine: Engine) -> None:
    await engine.put_context("c", token_budget=100, policy={"strategy": "manual"})
    await engine.append("c", text("system", "sys", token_count=10))
    await engine.append("c", text("user", "q", token_count=30))
    await engine.append("c", call("k", token_count=30))
    pending = [result("k", token_count=20), text("user", "next", token_count=20)]
    window = await engine.window("c", pending=pending)
    assert window.used_tokens <= 100
    roles = [item.message.role for item in window.items]
    assert roles == ["system", "assistant", "tool", "user"]  # the call stays with its result
    assert [item.from_seq for item in window.items[-2:]] == [4, 5]
    assert (await engine.get_context("c")).last_seq == 3  # nothing stored
    # a pending turn larger than the budget is still sent whole
    huge = await engine.window("c", pending=[text("user", "big", token_count=500)])
    assert huge.items[-1].message.parts[0]["text"] == "big"


async def test_append_with_rewind_forgets_the_abandoned_branch(engine: Engine) -> None:
    await engine.put_context("c", policy={"strategy": "manual"})
    await engine.append_batch(
        "c",
        [text("user", "q1"), text("assistant", "a1"), text("user", "q2"), text("assistant", "a2")],
    )
    # regenerate: q2 is sent again and a2 is abandoned
    res = await engine.append_batch(
        "c", [text("user", "q2"), text("assistant", "a2'")], rewind_to_seq=3
    )
    assert res.seqs == [5, 6]
    window = await engine.window("c")
    assert [i.message.parts[0]["text"] for i in window.items] == ["q1", "a1", "q2", "a2'"]
    assert window.segments == [
        {"type": "live", "from_seq": 1, "to_seq": 2},
        {"type": "live", "from_seq": 5, "to_seq": 6},
    ]
    assert len(await engine.messages("c")) == 6  # the log keeps everything
    with pytest.raises(ValidationError):
        await engine.append_batch("c", [text("user", "x")], rewind_to_seq=99)


async def test_read_turn_snapshot(engine: Engine) -> None:
    await engine.put_context("c", token_budget=50, trigger_ratio=0.5)
    await engine.append_batch("c", [text("user", str(i), token_count=10) for i in range(10)])
    await engine.append("c", text("user", "newest", token_count=10))
    ctx, live, history = await engine.read_turn("c", newest=3, oldest=2)
    assert [r.seq for r in live] == list(range(ctx.live_from_seq, ctx.last_seq + 1))
    assert [r.seq for r in history] == [1, 2, 9, 10, 11]
    window = await engine.window("c", snapshot=(ctx, live))
    assert window.to_json() == (await engine.window("c")).to_json()
    with pytest.raises(ContextNotFound):
        await engine.read_turn("missing", 3, 2)


@pytest.mark.parametrize("pinned", [False, True], ids=["plain", "system"])
@pytest.mark.parametrize("size", [20, 26, 27, 28, 29, 30, 32, 40])
async def test_compactions_stay_several_appends_apart_at_the_message_limit(
    engine: Engine, size: int, pinned: bool
) -> None:
    """The default policy (budget 8000, trigger 0.7, ``limit`` 200) with messages
    of ~28 tokens holds 200 messages right at the trigger level: a cut to 200
    messages was over the trigger and the limit again one append later, so
    every append compacted (reading the whole window each time, and moving the
    window's front, which defeats provider prompt caches). A cut over the limit
    goes to ``limit * trigger_ratio`` messages, as the budget goes to the trigger
    level. With a leading system message (pinned, counted by the policy's
    check but not by the cut), the same."""
    await engine.put_context("c")
    if pinned:
        await engine.append("c", text("system", "be brief", token_count=size))
    ctx = await engine.get_context("c")
    assert (ctx.token_budget, ctx.trigger_ratio) == (8000, 0.7)
    assert ctx.policy.config["limit"] == 200
    compacted_at: list[int] = []
    for i in range(700):
        result = await engine.append("c", text("user", f"m{i}", token_count=size))
        if result.version - result.seqs[0] > len(compacted_at):  # a compaction took a version
            compacted_at.append(result.seqs[0])
    assert compacted_at, "the window never compacted"
    gaps = [b - a for a, b in zip(compacted_at, compacted_at[1:], strict=False)]
    assert min(gaps, default=60) >= 40, (size, compacted_at[:12])
    assert (await engine.window("c")).used_tokens <= 8000


def test_limit_target_rounds_up_the_exact_product() -> None:
    """``limit * trigger_ratio`` rounded up, without floating-point dust:
    100 * 0.07 is 7.000000000000001 in floating point, and the target is 7."""
    from fastpaca_core.policies.base import limit_target

    def target(limit: int, ratio: float) -> int:
        ctx = type("Ctx", (), {"trigger_ratio": ratio})()
        return limit_target(ctx, limit)  # type: ignore[arg-type]

    assert target(100, 0.07) == 7
    assert target(200, 0.7) == 140
    assert target(3, 0.5) == 2
    assert target(1, 0.1) == 1
    assert target(50, 1.0) == 50


async def test_a_read_of_the_log_stops_at_a_size(engine: Engine) -> None:
    await engine.put_context("big", policy={"strategy": "manual"})
    sizes = [100, 5_000, 300, 20_000, 50, 7_000]
    await engine.append_batch("big", [text("user", "x" * n) for n in sizes])
    every = await engine.read_log("big", 1, 6)
    assert [m.seq for m in every] == [1, 2, 3, 4, 5, 6]
    assert [m.seq for m in await engine.read_log("big", 1, 6, 5_100)] == [1, 2]
    assert [m.seq for m in await engine.read_log("big", 2, 6, 1)] == [2]  # at least one row
    assert [m.seq for m in await engine.read_log("big", 3, 6, 20_000)] == [3, 4]
    assert [m.seq for m in await engine.read_log("big", 5, 6, 10**9)] == [5, 6]
    assert await engine.read_log("big", 7, 9, 100) == []
    assert [m.to_json() for m in await engine.read_log("big", 1, 6, 5_300)] == [
        m.to_json() for m in every[:3]
    ]


async def test_a_store_without_the_size_cap_reads_whole_ranges() -> None:
    """A store written before ``max_bytes`` existed (three arguments) still
    serves capped reads (pages, replay, the timed wrapper): the whole range."""
    from fastpaca_core.http.metrics import Metrics, TimedStore
    from fastpaca_core.model import StoredMessage
    from fastpaca_core.stores.memory import MemoryStore

    class Legacy(MemoryStore):
        async def read_messages(  # type: ignore[override]
            self, context_id: str, from_seq: int, to_seq: int
        ) -> list[StoredMessage]:
            return await super().read_messages(context_id, from_seq, to_seq)

    for store in (Legacy(), TimedStore(Legacy(), Metrics())):
        engine = Engine(store)
        await engine.put_context("old", policy={"strategy": "manual"})
        await engine.append_batch("old", [text("user", "x" * n) for n in (5_000, 5_000, 10)])
        assert [m.seq for m in await engine.read_log("old", 1, 3, 100)] == [1, 2, 3]
        assert [m.seq for m in await engine.read_log("old", 2, 3)] == [2, 3]


async def test_the_log_keeps_what_was_appended_whatever_callers_change_later(
    engine: Engine,
) -> None:
    """The durable stores write a message as JSON and decode each read afresh;
    the memory store kept the caller's own objects, so a caller changing its
    message after the append (or a reader changing what it read) rewrote the
    log for every later reader."""
    await engine.put_context("c", policy={"strategy": "manual"})
    sent = call("c1", metadata={"trace": {"step": 1}})
    await engine.append("c", sent)
    sent["parts"][0]["input"]["city"] = "Paris"
    sent["metadata"]["trace"]["step"] = 2
    (read,) = await engine.messages("c")
    assert read.parts[0]["input"] == {"city": "Oslo"}
    assert read.metadata == {"trace": {"step": 1}}
    read.parts[0]["input"]["city"] = "Rome"
    (tail,) = await engine.tail("c")
    assert tail.parts[0]["input"] == {"city": "Oslo"}
    window = await engine.window("c")
    assert window.to_json()["messages"][0]["parts"][0]["input"] == {"city": "Oslo"}
