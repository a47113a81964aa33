"""The Postgres store's write path: optimistic writes, their locked fallback, hints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fastpaca_core import Engine
from fastpaca_core.errors import StoreUnavailable, VersionConflict
from fastpaca_core.stores._pglisten import Notifier, parse_hints
from fastpaca_core.stores._pgtx import PgTx
from fastpaca_core.stores.base import Tx
from fastpaca_core.stores.postgres import PostgresStore


def text(value: str) -> dict[str, object]:
    return {"role": "user", "parts": [{"type": "text", "text": value}]}


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, as two processes would have."""
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@pytest.mark.postgres
async def test_racing_stores_stay_gapless(stores: tuple[PostgresStore, PostgresStore]) -> None:
    """Two stores (as two processes would) racing on one context: every write
    lands once, in order, whichever path (optimistic or locked) it took."""
    a, b = stores
    ea, eb = Engine(a), Engine(b)
    await ea.put_context("hot", policy={"strategy": "manual"})
    count = 40

    async def one(engine: Engine, name: str, i: int) -> None:
        await engine.append("hot", text(f"{name}-{i}"), idempotency_key=f"{name}-{i}")

    await asyncio.gather(
        *(one(ea, "a", i) for i in range(count)), *(one(eb, "b", i) for i in range(count))
    )
    # a replay answers from the stored key, whichever store asks
    again = await eb.append("hot", text("a-3"), idempotency_key="a-3")
    assert again.replayed
    ctx = await ea.get_context("hot")
    rows = await ea.messages("hot", limit=1000)
    assert ctx.last_seq == ctx.version == 2 * count
    assert [r.seq for r in rows] == list(range(1, 2 * count + 1))
    assert rows[-1].cum_tokens == sum(r.token_count for r in rows)


@pytest.mark.postgres
async def test_lost_race_runs_again_locked(stores: tuple[PostgresStore, PostgresStore]) -> None:
    """An optimistic write whose context changed after its read writes nothing
    and runs again under the row lock, on the fresh row: no lost update."""
    a, b = stores
    await Engine(b).put_context("c", policy={"strategy": "manual"})  # a reads the row
    gate = asyncio.Event()
    locked: list[bool] = []

    async def op(tx: Tx) -> None:
        ctx = await tx.load_context()
        assert ctx is not None
        locked.append(getattr(tx, "locked"))  # noqa: B009
        if len(locked) == 1:
            await gate.wait()
        ctx.metadata = {**ctx.metadata, "a": 1}
        await tx.save_context(ctx, created=False)

    task = asyncio.create_task(a.run("c", op))
    while not locked:
        await asyncio.sleep(0.001)
    await Engine(b).update_metadata("c", {"b": 2})
    gate.set()
    await task
    assert locked == [False, True]
    assert (await b.get_context("c")).metadata == {"a": 1, "b": 2}
    assert "c" in a._contended


@pytest.mark.postgres
async def test_a_known_row_saves_the_read_and_a_stale_one_costs_nothing(
    stores: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store starts an operation from the context row as it last wrote it (one
    round trip, no read). When another process wrote the row since, the write
    does nothing and the operation runs again on the row as read: nothing is
    lost, and no answer comes from the stale row (an ``if_version`` that is
    current is not refused; one that is not, is)."""
    attempts: list[PgTx] = []
    original = PgTx.__init__

    def spy(self: PgTx, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        attempts.append(self)

    monkeypatch.setattr(PgTx, "__init__", spy)
    a, b = stores
    ea, eb = Engine(a), Engine(b)
    await ea.put_context("c", policy={"strategy": "manual"})
    attempts.clear()
    await ea.append("c", text("one"))
    assert [t.from_known for t in attempts] == [True]  # one attempt, no read
    assert (await eb.append("c", text("two"), if_version=1)).version == 2
    attempts.clear()
    result = await ea.append("c", text("three"), if_version=2)  # a knew version 1
    assert result.version == 3 and result.seqs == [3]
    assert [(t.from_known, t.locked) for t in attempts] == [(True, False), (False, False)]
    # written by another process lately: a's next operations read the row first
    assert "c" in a._shared and "c" not in a._known
    with pytest.raises(VersionConflict) as refused:
        await ea.append("c", text("four"), if_version=2)
    assert (refused.value.expected, refused.value.found) == (2, 3)
    assert "c" not in a._contended  # a stale row is not contention
    rows = await eb.messages("c")
    assert [r.parts[0]["text"] for r in rows] == ["one", "two", "three"]


@pytest.mark.postgres
async def test_if_version_across_stores(stores: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = stores
    ea, eb = Engine(a), Engine(b)
    await ea.put_context("c", policy={"strategy": "manual"})
    results = await asyncio.gather(
        *(e.append("c", text(str(i)), if_version=0) for i, e in enumerate([ea, eb] * 4)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, VersionConflict) for r in results if isinstance(r, BaseException))
    assert (await eb.get_context("c")).version == 1


@pytest.mark.postgres
async def test_other_stores_hear_coalesced_hints(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    heard: list[tuple[str, int]] = []
    stop = await b.listen(lambda cid, version: heard.append((cid, version)))
    own: list[tuple[str, int]] = []
    stop_own = await a.listen(lambda cid, version: own.append((cid, version)))
    try:
        engine = Engine(a)
        for cid in ("x", "y"):
            await engine.put_context(cid, policy={"strategy": "manual"})
        await asyncio.gather(*(engine.append(cid, text("m")) for cid in ("x", "y") * 3))
        for _ in range(200):
            if ("x", 3) in heard and ("y", 3) in heard:
                break
            await asyncio.sleep(0.01)
        assert ("x", 3) in heard and ("y", 3) in heard
        assert own == []  # a store's own writes are not hints to itself
    finally:
        await stop()
        await stop_own()


async def test_notifier_coalesces_and_splits() -> None:
    sent: list[list[str]] = []

    async def send(payloads: list[str]) -> None:
        sent.append(payloads)

    notifier = Notifier(send, "tok")
    for version in range(1, 4):
        notifier.add("c1", version)
    notifier.add("c2", 7)
    long_ids = [f"t/{'x' * 250}{i}" for i in range(40)]  # > one payload's worth
    for cid in long_ids:
        notifier.add(cid, 1)
    await notifier.drain(1.0)
    assert len(sent) == 1 and len(sent[0]) > 1
    assert all(len(p.encode()) <= 8000 for p in sent[0])
    hints = [h for p in sent[0] for h in parse_hints(p)]
    assert ("tok", "c1", 3) in hints and ("tok", "c2", 7) in hints
    assert len(hints) == 2 + len(long_ids)
    assert list(parse_hints("old|5|ctx")) == [("old", "ctx", 5)]
    assert list(parse_hints("junk")) == []


async def test_hints_that_fail_to_go_are_sent_again() -> None:
    """A connection lost under the hints' statement: they go with the next
    attempt (merged with newer ones), not dropped while the database is up."""
    sent: list[list[str]] = []
    failures = 2

    async def send(payloads: list[str]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreUnavailable("connection lost")
        sent.append(payloads)

    notifier = Notifier(send, "tok")
    notifier.add("c1", 1)
    await asyncio.sleep(0.05)  # the first attempt failed meanwhile
    notifier.add("c1", 2)
    notifier.add("c2", 5)
    await notifier.drain(5.0)
    hints = [h for payloads in sent for p in payloads for h in parse_hints(p)]
    assert failures == 0 and sorted(hints) == [("tok", "c1", 2), ("tok", "c2", 5)]

    async def never(payloads: list[str]) -> None:
        raise StoreUnavailable("away")

    stuck = Notifier(never, "tok")
    stuck.add("c", 1)
    await stuck.stop(0.2)  # gives up at close, no task left behind
    assert stuck._task is None and stuck._pending == {}
