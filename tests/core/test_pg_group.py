"""The Postgres store's group write: concurrent appends share one statement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from fastpaca_core import AppendResult, Engine
from fastpaca_core.errors import StoreError, StoreUnavailable
from fastpaca_core.stores._pggroup import GroupWriter, Write
from fastpaca_core.stores._pgschema import split_url
from fastpaca_core.stores._pgtx import PgTx
from fastpaca_core.stores.postgres import PostgresStore, _Unknown

pytestmark = pytest.mark.postgres

MANUAL = {"strategy": "manual"}


def text(value: str) -> dict[str, object]:
    return {"role": "user", "parts": [{"type": "text", "text": value}]}


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(pg_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def admin(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection on the test's schema, for triggers and checks."""
    dsn, schema = split_url(pg_url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema or "public"})
    try:
        yield conn
    finally:
        await conn.close()


def record(store: PostgresStore) -> list[tuple[list[str], list[str]]]:
    """Each group statement the store sends: the contexts in it, and those applied."""
    sent: list[tuple[list[str], list[str]]] = []
    group = store._group
    send: Callable[[list[Write]], Awaitable[dict[str, int]]] = group._send

    async def recording(writes: list[Write]) -> dict[str, int]:
        ids = [w.context_id for w in writes]
        try:
            applied = await send(writes)
        except BaseException:
            sent.append((ids, []))
            raise
        sent.append((ids, sorted(applied)))
        return applied

    group._send = recording
    return sent


async def put_all(engine: Engine, ids: list[str]) -> None:
    for cid in ids:
        await engine.put_context(cid, policy=MANUAL)
        await engine.append(cid, text(f"{cid} first"))  # the store now knows the row


async def texts(engine: Engine, cid: str) -> list[str]:
    return [r.parts[0]["text"] for r in await engine.messages(cid, limit=100)]


async def test_concurrent_appends_share_statements(store: PostgresStore) -> None:
    """Appends on 40 contexts at once: most go out in a few group statements,
    each lands once, in order, with its tokens, and the store knows each new
    row (the next append again skips the read)."""
    engine = Engine(store)
    ids = [f"g{i}" for i in range(40)]
    await put_all(engine, ids)
    sent = record(store)
    for n in (2, 3):
        results = await asyncio.gather(*(engine.append(cid, text(f"{cid} {n}")) for cid in ids))
        assert [r.seqs for r in results] == [[n]] * 40
    grouped = sum(len(ids_) for ids_, _ in sent)
    assert grouped >= 60  # 2 lanes: at most 2 of each round's 40 go alone
    assert len(sent) < grouped / 4
    assert all(ids_ == applied or sorted(ids_) == applied for ids_, applied in sent)
    for cid in ids:
        assert await texts(engine, cid) == [f"{cid} first", f"{cid} 2", f"{cid} 3"]
        ctx = await engine.get_context(cid)
        rows = await engine.messages(cid)
        assert ctx.last_seq == ctx.version == 3
        assert rows[-1].cum_tokens == ctx.total_tokens == sum(r.token_count for r in rows)
        assert cid in store._known


async def test_a_stale_row_in_a_group_runs_again_and_the_others_apply(
    store: PostgresStore, pg_url: str
) -> None:
    """Another process wrote one context of a group since this store's write:
    that write is left out of the statement, its operation runs again on the
    row as read, and the other writes of the group apply as they were."""
    engine = Engine(store)
    ids = [f"s{i}" for i in range(8)]
    await put_all(engine, ids)
    other = PostgresStore(pg_url)
    await other.open()
    try:
        await Engine(other).append("s5", text("s5 from elsewhere"))
    finally:
        await other.close()
    sent = record(store)
    await asyncio.gather(*(engine.append(cid, text(f"{cid} again")) for cid in ids))
    stale = [(ids_, applied) for ids_, applied in sent if "s5" in ids_ and "s5" not in applied]
    assert stale, sent  # s5 was sent in a group and left out of it
    ids_, applied = stale[0]
    assert len(ids_) > 1 and sorted(set(ids_) - {"s5"}) == applied
    assert await texts(engine, "s5") == ["s5 first", "s5 from elsewhere", "s5 again"]
    for cid in set(ids) - {"s5"}:
        assert await texts(engine, cid) == [f"{cid} first", f"{cid} again"]
    assert "s5" in store._shared


async def test_a_write_the_database_refuses_fails_alone(
    store: PostgresStore, admin: asyncpg.Connection
) -> None:
    """A group statement that fails is sent again one write at a time: the
    write the database refuses fails (nothing of it stored), the others land."""
    engine = Engine(store)
    ids = [f"b{i}" for i in range(8)]
    await put_all(engine, ids)
    await admin.execute(
        """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW
        WHEN (NEW.context_id = 'b6') EXECUTE FUNCTION refuse();
        """
    )
    sent = record(store)
    results = await asyncio.gather(
        *(engine.append(cid, text(f"{cid} again")) for cid in ids), return_exceptions=True
    )
    failed = [cid for cid, r in zip(ids, results, strict=True) if isinstance(r, BaseException)]
    assert failed == ["b6"]
    assert isinstance(results[6], StoreError) and "refused for the test" in str(results[6])
    assert any(len(ids_) > 1 and "b6" in ids_ and not applied for ids_, applied in sent)
    assert (["b6"], []) in sent  # then alone
    await _idle(store)
    assert await texts(engine, "b6") == ["b6 first"]
    assert (await engine.get_context("b6")).version == 1
    for cid in set(ids) - {"b6"}:
        assert await texts(engine, cid) == [f"{cid} first", f"{cid} again"]


async def _slow_trigger(admin: asyncpg.Connection, seconds: float) -> None:
    """Inserting a message into a context whose id starts with ``slow`` sleeps."""
    await admin.execute(
        f"""
        CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$;
        CREATE TRIGGER slow BEFORE INSERT ON messages FOR EACH ROW
        WHEN (NEW.context_id LIKE 'slow%') EXECUTE FUNCTION slow();
        """
    )


async def _queued(store: PostgresStore, count: int) -> None:
    for _ in range(500):
        if len(store._group._queue) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writes did not queue")


async def test_a_caller_that_gave_up_before_its_turn_writes_nothing(
    store: PostgresStore, admin: asyncpg.Connection
) -> None:
    """Both lanes busy; a queued append whose caller gives up (a deadline, a
    disconnect) is not sent at all, and the context takes the next append."""
    engine = Engine(store)
    await put_all(engine, ["slow1", "slow2", "q"])
    # the two slow appends wait inside their statements until the gate opens
    await admin.execute(
        """
        CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
        CREATE TRIGGER gate BEFORE INSERT ON messages FOR EACH ROW
        WHEN (NEW.context_id LIKE 'slow%') EXECUTE FUNCTION gate();
        SELECT pg_advisory_lock(4242);
        """
    )
    slow = [asyncio.create_task(engine.append(cid, text("late"))) for cid in ("slow1", "slow2")]
    queued = asyncio.create_task(engine.append("q", text("given up")))
    await _queued(store, 1)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await admin.execute("SELECT pg_advisory_unlock(4242)")
    await asyncio.gather(*slow)
    await _idle(store)
    assert await texts(engine, "q") == ["q first"]
    await engine.append("q", text("q again"))
    assert await texts(engine, "q") == ["q first", "q again"]
    assert await texts(engine, "slow1") == ["slow1 first", "late"]


async def _idle(store: PostgresStore) -> None:
    """The group writer has nothing queued and no lane taken (a lane's end is
    counted by a callback, one loop turn after it)."""
    for _ in range(3):
        await asyncio.sleep(0)
    group = store._group
    assert group._busy == 0 and not group._queue and not group._tasks


async def _kill(admin: asyncpg.Connection, statement: str, store: PostgresStore) -> None:
    """Terminate the backend of ``store`` running ``statement`` (a prefix of its text)."""
    assert store._pool is not None
    for _ in range(200):
        own = [h._con.get_server_pid() for h in store._pool._holders if h._con is not None]
        pids = await admin.fetch(
            # in the trigger's pg_sleep: the statement was sent (killed while
            # still being prepared, nothing was sent, and the write is retried)
            "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 "
            "AND wait_event = 'PgSleep' AND pid = ANY($2::int[])",
            statement + "%",
            own,
        )
        if pids:
            assert len(pids) == 1
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pids[0][0])
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no statement {statement!r} under way")


async def test_a_write_whose_connection_is_lost_is_unknown_not_retried(
    store: PostgresStore, admin: asyncpg.Connection
) -> None:
    """The connection of a lone write (its own statement) dies before the
    write commits: the caller hears 503, outcome unknown, and the operation is
    not run again behind its back (that could store the message twice)."""
    engine = Engine(store)
    await put_all(engine, ["slow1"])
    await _slow_trigger(admin, 0.5)
    call = asyncio.create_task(engine.append("slow1", text("lost")))
    await _kill(admin, "WITH c AS", store)
    with pytest.raises(StoreUnavailable, match="may or may not"):
        await call
    await admin.execute("DROP TRIGGER slow ON messages")
    await engine.append("slow1", text("next"))
    assert await texts(engine, "slow1") == ["slow1 first", "next"]


async def test_a_group_whose_connection_is_lost_is_unknown_to_every_caller(
    store: PostgresStore, admin: asyncpg.Connection
) -> None:
    """The connection of a group statement dies before it commits: every
    caller in the group hears 503 (the outcome is unknown; here nothing of the
    group was written), and the contexts take the next appends."""
    engine = Engine(store)
    ids = ["slow1", "slow2", "slow3", "slow4"]
    await put_all(engine, ids)
    await _slow_trigger(admin, 0.5)
    calls = [asyncio.create_task(engine.append(cid, text("lost"))) for cid in ids]
    await _kill(admin, "WITH u AS", store)  # the first two go alone, the others together
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(r) for r in results[2:]] == [_Unknown, _Unknown]
    assert "may or may not" in str(results[2])
    await _idle(store)
    assert [type(r) for r in results[:2]] == [AppendResult, AppendResult]
    await admin.execute("DROP TRIGGER slow ON messages")
    for cid in ids:
        await engine.append(cid, text("next"))
    for cid in ids[:2]:
        assert await texts(engine, cid) == [f"{cid} first", "lost", "next"]
    for cid in ids[2:]:
        assert await texts(engine, cid) == [f"{cid} first", "next"]


async def test_one_write_per_context_in_a_group() -> None:
    """Two writes on one context never share a statement (it would update the
    row once and insert both writes' messages)."""
    groups: list[list[str]] = []
    release = asyncio.Event()

    async def send(writes: list[Write]) -> dict[str, int]:
        groups.append([w.context_id for w in writes])
        await release.wait()
        return {w.context_id: 7 for w in writes}

    group = GroupWriter(send, lanes=1)
    loop = asyncio.get_running_loop()

    def write(cid: str) -> Write:
        return Write((cid,), 1, [], [], None, loop.create_future())

    first = asyncio.create_task(group.write(write("x")))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(group.write(write(cid))) for cid in ("c", "a", "b", "a")]
    await asyncio.sleep(0)
    release.set()
    assert await first == 7 and await asyncio.gather(*rest) == [7, 7, 7, 7]
    assert groups == [["x"], ["a", "b", "c"], ["a"]]  # in id order: the order rows are locked


async def test_a_failing_lane_leaves_no_caller_waiting() -> None:
    """A group statement that fails, then a bug while its writes are sent one
    at a time: every caller hears an error (none waits forever), and the
    writer has no lane left taken."""

    async def send(writes: list[Write]) -> dict[str, int]:
        if len(writes) > 1:
            raise StoreError("refused")
        if writes[0].context_id == "b":
            raise RuntimeError("a bug")
        return {writes[0].context_id: 7}

    group = GroupWriter(send, lanes=1)
    loop = asyncio.get_running_loop()
    calls = [
        asyncio.create_task(group.write(Write((cid,), 1, [], [], None, loop.create_future())))
        for cid in ("a", "b", "c", "d")
    ]
    # (a guard against hanging, not a timing: the callers hear at once)
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
    assert results[0] == 7
    assert [type(r) for r in results[1:]] == [StoreUnavailable] * 3
    assert "may or may not" in str(results[1])
    for _ in range(3):
        await asyncio.sleep(0)
    assert group._busy == 0 and not group._queue and not group._tasks


async def test_a_busy_context_waits_in_the_process_not_on_the_pool(
    pg_url: str, admin: asyncpg.Connection
) -> None:
    """Appends on one context run one at a time in a process, the waiting ones
    holding no pooled connection: with a pool of 2 and ten appends on a context
    whose first write is held up in the database, another context's append
    still goes through; then the ten land in order, none needing the row lock."""
    store = PostgresStore(pg_url, max_size=2)
    await store.open()
    try:
        engine = Engine(store)
        await put_all(engine, ["hot", "other"])
        await admin.execute(
            """
            CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_advisory_xact_lock_shared(4243); RETURN NEW; END $$;
            CREATE TRIGGER gate BEFORE INSERT ON messages FOR EACH ROW
            WHEN (NEW.context_id = 'hot') EXECUTE FUNCTION gate();
            SELECT pg_advisory_lock(4243);
            """
        )
        locked: list[bool] = []
        original = PgTx.__init__

        def spy(self: PgTx, *args: object, **kwargs: Any) -> None:
            original(self, *args, **kwargs)  # type: ignore[arg-type]
            locked.append(self.locked)

        PgTx.__init__ = spy  # type: ignore[method-assign]
        try:
            hot = [asyncio.create_task(engine.append("hot", text(f"hot {i}"))) for i in range(10)]
            await asyncio.sleep(0.05)
            # (a guard against hanging, not a timing)
            await asyncio.wait_for(engine.append("other", text("other 2")), 10)
            await admin.execute("SELECT pg_advisory_unlock(4243)")
            results = await asyncio.gather(*hot)
        finally:
            PgTx.__init__ = original  # type: ignore[method-assign]
        assert [r.seqs for r in results] == [[i] for i in range(2, 12)]
        assert await texts(engine, "hot") == ["hot first", *(f"hot {i}" for i in range(10))]
        assert locked == [False] * 11
        assert not store._turns
    finally:
        await store.close()


async def test_a_stalled_context_fails_its_waiting_operations_together(
    pg_url: str, admin: asyncpg.Connection
) -> None:
    """The database holds a context's row: the operation under way fails after
    the store timeout, and those waiting for their turn behind it fail with it
    (their wait counts against the timeout), not one timeout after another."""
    store = PostgresStore(pg_url, timeout=1.0)
    await store.open()
    try:
        engine = Engine(store)
        await put_all(engine, ["held"])
        async with admin.transaction():
            await admin.execute("SELECT 1 FROM contexts WHERE id = 'held' FOR UPDATE")
            calls = [asyncio.create_task(engine.append("held", text(f"m{i}"))) for i in range(4)]
            results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        # the first was under way: its backend still waits for the row, so its
        # write may land once the row is free (the client was told so)
        assert "may or may not" in str(results[0])
        waited = [r for r in results[1:] if "operations before this one" in str(r)]
        assert len(waited) == 3  # the three behind it gave up waiting, with it
        assert not store._turns
        await engine.append("held", text("after"))
        assert await texts(engine, "held") in (
            ["held first", "after"],
            ["held first", "m0", "after"],
        )
    finally:
        await store.close()
