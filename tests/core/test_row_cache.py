"""The decoded-row cache of window reads (``stores._rowcache``), alone and in
the SQLite and Postgres stores: a read served partly from it returns exactly
the rows the log holds, however the log moved meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastpaca_core import Engine
from fastpaca_core.model import StoredMessage
from fastpaca_core.stores import open_store
from fastpaca_core.stores._rowcache import ROW_OVERHEAD, Plan, RowCache, SizedRows, row_size
from fastpaca_core.stores.sqlite import SQLiteStore

from .helpers import text

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def _row(seq: int, body: str = "") -> StoredMessage:
    parts = [{"type": "text", "text": body or f"m{seq}"}]
    return StoredMessage(seq, "user", parts, {}, 3, 3 * seq, seq, CREATED)


class _Log:
    """A context's log, read as the stores read it; records each fetch."""

    def __init__(self, last: int, size: int = 10) -> None:
        self.rows = [_row(seq) for seq in range(1, last + 1)]
        self.size = size
        self.fetches: list[tuple[int, int]] = []

    def append(self, n: int, body: str = "") -> None:
        last = len(self.rows)
        self.rows.extend(_row(seq, body) for seq in range(last + 1, last + n + 1))

    def _rows(self, cache: RowCache, plan: Plan) -> list[StoredMessage] | None:
        fetched: SizedRows = []
        if plan.fetches:
            self.fetches.append((plan.fetch_from, plan.last_seq))
            fetched = [(r, self.size) for r in self.rows[plan.fetch_from - 1 : plan.last_seq]]
        return cache.complete(plan, fetched)

    def read(self, cache: RowCache, cid: str, first: int, created: datetime = CREATED) -> list[int]:
        last = len(self.rows)
        rows = self._rows(cache, cache.plan(cid, created, first, last))
        if rows is None:
            rows = self._rows(cache, RowCache.afresh(cid, created, first, last))
        assert rows is not None
        assert [r.seq for r in rows] == list(range(first, last + 1))
        assert rows == self.rows[first - 1 :]  # exactly the log's rows
        return [r.seq for r in rows]


def test_a_read_again_fetches_the_rows_after_those_it_holds() -> None:
    """Each fetch starts at the last row held (fetched again to check it)."""
    cache, log = RowCache(), _Log(5)
    assert log.read(cache, "c", 1) == [1, 2, 3, 4, 5]
    log.append(2)
    assert log.read(cache, "c", 1) == [1, 2, 3, 4, 5, 6, 7]
    assert log.read(cache, "c", 4) == [4, 5, 6, 7]  # the window moved on
    log.append(1)
    assert log.read(cache, "c", 4) == [4, 5, 6, 7, 8]
    assert log.read(cache, "c", 2) == [2, 3, 4, 5, 6, 7, 8]  # an earlier reader
    assert log.fetches == [(1, 5), (5, 7), (7, 7), (7, 8), (8, 8)]
    assert cache.size == 8 * 10


def test_rows_long_before_the_window_are_let_go() -> None:
    """A run keeps, before a read's first row, as many rows as that read returns."""
    cache, log = RowCache(), _Log(10)
    log.read(cache, "c", 1)
    log.append(2)
    assert log.read(cache, "c", 9) == [9, 10, 11, 12]  # keeps 5..12
    assert log.read(cache, "c", 5) == [5, 6, 7, 8, 9, 10, 11, 12]
    assert log.fetches[-1] == (12, 12)
    log.read(cache, "c", 4)
    assert log.fetches[-1] == (4, 12)


def test_rows_another_snapshot_contradicts_are_dropped() -> None:
    cache, log = RowCache(), _Log(6)
    log.read(cache, "c", 1)
    # another context under the same id (another database): created at another time
    assert log.read(cache, "c", 1, CREATED + timedelta(seconds=1)) == [1, 2, 3, 4, 5, 6]
    assert log.fetches[-1] == (1, 6)
    # a log shorter than what is held: not this log either
    log.rows = log.rows[:4]
    assert log.read(cache, "c", 1, CREATED + timedelta(seconds=1)) == [1, 2, 3, 4]
    assert log.fetches[-1] == (1, 4)


def test_a_log_that_lost_its_newest_rows_and_was_written_on_is_read_afresh() -> None:
    """A restore, or a failover that lost commits, then appends: the seqs the
    cache holds now hold other rows. The run's last row, fetched again, tells."""
    cache, log = RowCache(), _Log(6)
    log.read(cache, "c", 1)
    log.rows = log.rows[:4]
    log.append(4, body="written after the loss")  # seqs 5..8, other rows
    assert log.read(cache, "c", 1) == [1, 2, 3, 4, 5, 6, 7, 8]  # checks the rows too
    assert log.fetches[-2:] == [(6, 8), (1, 8)]
    log.append(1)
    log.read(cache, "c", 1)
    assert log.fetches[-1] == (8, 9)  # the fresh rows are kept


def test_an_empty_range_reads_nothing() -> None:
    cache, log = RowCache(), _Log(3)
    assert log.read(cache, "c", 4) == []
    assert log.fetches == []


def test_the_cache_is_bounded_least_recently_read_first() -> None:
    cache = RowCache(max_bytes=200)
    logs = {cid: _Log(5, size=10) for cid in "abcde"}  # 50 each
    for cid in "abc":
        logs[cid].read(cache, cid, 1)
    logs["a"].read(cache, "a", 1)  # a is now read more recently than b
    for cid in "de":  # 250: the least recently read goes
        logs[cid].read(cache, cid, 1)
    assert cache.size == 200
    for cid in "acde":
        logs[cid].read(cache, cid, 1)
        assert logs[cid].fetches.count((1, 5)) == 1, cid  # still held: never read whole again
    assert logs["b"].read(cache, "b", 1) == [1, 2, 3, 4, 5]
    assert logs["b"].fetches == [(1, 5), (1, 5)]  # b was evicted, read again
    huge = _Log(6, size=10)  # 60: over a quarter of the cache, its oldest row is let go
    huge.read(cache, "huge", 2)
    huge.read(cache, "huge", 2)
    assert huge.fetches == [(2, 6), (6, 6)]
    huge.read(cache, "huge", 1)
    assert huge.fetches[-1] == (1, 6)
    assert cache.size <= 200


def test_a_row_counts_its_json_and_an_overhead() -> None:
    assert row_size('[{"type":"text","text":"hi"}]', "{}") == 3 * (29 + 2) + ROW_OVERHEAD


def test_a_caller_changing_its_list_does_not_change_the_cache() -> None:
    cache, log = RowCache(), _Log(3)
    rows = cache.complete(cache.plan("c", CREATED, 1, 3), [(r, 1) for r in log.rows])
    assert rows is not None
    rows.clear()
    again = cache.complete(cache.plan("c", CREATED, 1, 3), [(log.rows[-1], 1)])
    assert again is not None and [r.seq for r in again] == [1, 2, 3]
    again.clear()
    log.read(cache, "c", 1)


def test_rows_that_do_not_follow_on_are_returned_not_kept() -> None:
    cache = RowCache()
    plan = cache.plan("c", CREATED, 1, 3)
    assert cache.complete(plan, [(_row(1), 1), (_row(3), 1)]) == [_row(1), _row(3)]
    assert cache.plan("c", CREATED, 1, 3).fetch_from == 1
    cache.complete(cache.plan("c", CREATED, 1, 3), [(_row(n), 1) for n in (1, 2, 3)])
    plan = cache.plan("c", CREATED, 1, 5)  # held: 1..3; a fetch of 3..5 missing a row
    assert plan.fetch_from == 3
    assert cache.complete(plan, [(_row(3), 1), (_row(5), 1)]) is None
    assert cache.plan("c", CREATED, 1, 5).fetch_from == 1  # dropped


async def test_a_window_read_again_finds_what_another_store_appended(durable_url: str) -> None:
    """Two stores on one database (two server processes): the first one's
    cached rows are completed with the rows the second one appended."""
    async with open_store(durable_url) as first, open_store(durable_url) as second:
        one, two = Engine(first), Engine(second)
        await one.put_context("c", policy={"strategy": "manual"})
        for i in range(4):
            await one.append("c", text("user", f"one {i}"))
        _, rows = await first.read_window("c")
        assert [r.parts[0]["text"] for r in rows] == [f"one {i}" for i in range(4)]
        for i in range(3):
            await two.append("c", text("assistant", f"two {i}"))
        ctx, rows = await first.read_window("c")
        assert ctx is not None and ctx.last_seq == 7
        assert [r.parts[0]["text"] for r in rows] == [f"one {i}" for i in range(4)] + [
            f"two {i}" for i in range(3)
        ]
        assert rows == await first.read_messages("c", 1, 7)


async def test_window_reads_follow_compactions(durable_url: str) -> None:
    """Appends that compact (the live window moves on) between reads: every
    read equals the log's live rows read afresh, with or without a tail."""
    async with open_store(durable_url) as store:
        engine = Engine(store)
        await engine.put_context("c", policy={"strategy": "last_n", "config": {"limit": 4}})
        for i in range(30):
            await engine.append("c", text("user" if i % 2 else "assistant", f"turn {i}"))
            for tail in (0, 6):
                ctx, rows = await store.read_window("c", tail)
                assert ctx is not None
                first = min(ctx.live_from_seq, max(1, ctx.last_seq - tail + 1))
                assert rows == await store.read_messages("c", first, ctx.last_seq)


async def test_sqlite_reads_on_the_writer_connection_only_while_it_is_idle(
    tmp_path: Path,
) -> None:
    """A read on the loop takes the writer's connection (its pages stay cached
    across its own commits) only while no transaction is open on it and no
    call on it runs in the writer thread; else the loop's own connection."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'f.db'}")
    await store.open()
    try:
        writer = store._write_conn
        assert writer is not None
        assert store._loop_reader() is writer
        writer.execute("BEGIN")
        try:
            other = store._loop_reader()
            assert other is not writer and other is store._loop_conn
        finally:
            writer.execute("ROLLBACK")
        seen = []  # what the loop would read on while a call runs in the writer thread
        await store._in_writer(lambda: seen.append(store._loop_reader()))
        assert seen == [store._loop_conn] and store._loop_conn is not writer
        assert store._loop_reader() is writer
    finally:
        await store.close()


def test_rows_written_extend_a_run_of_the_same_epoch_and_serve_reads_alone() -> None:
    """``extend`` adds committed rows to a run read in the writer's epoch
    when they follow on from it; ``serve`` answers from the run alone only
    in that epoch, for a run ending at the known last seq."""
    cache, log = RowCache(), _Log(3)
    cache.complete(cache.plan("c", CREATED, 1, 3, epoch=7), [(r, 10) for r in log.rows])
    assert cache.serve("c", CREATED, 1, 3, 7) == log.rows
    assert cache.serve("c", CREATED, 2, 3, 7) == log.rows[1:]
    assert cache.serve("c", CREATED, 1, 3, 8) is None  # another epoch: something else wrote
    assert cache.serve("c", CREATED, 1, 4, 7) is None  # the log went on: not all held
    later = CREATED + timedelta(seconds=1)
    assert cache.serve("c", later, 1, 3, 7) is None  # another context under the id
    log.append(2)
    assert not cache.follows("c", 5, 7) and cache.follows("c", 4, 7)
    cache.extend("c", CREATED, [(r, 10) for r in log.rows[4:]], 7)  # a gap: not taken
    cache.extend("c", CREATED, [(r, 10) for r in log.rows[3:]], 8)  # another epoch: not taken
    cache.extend("c", later, [(r, 10) for r in log.rows[3:]], 7)  # another context
    assert cache.serve("c", CREATED, 1, 5, 7) is None
    cache.extend("c", CREATED, [(r, 10) for r in log.rows[3:]], 7)
    assert cache.serve("c", CREATED, 1, 5, 7) == log.rows
    assert cache.size == 5 * 10
    # a read of another epoch checks the run's last row, and keeps it for its epoch
    assert cache.complete(cache.plan("c", CREATED, 1, 5, epoch=9), [(log.rows[-1], 10)])
    assert cache.serve("c", CREATED, 1, 5, 9) == log.rows
    cache.extend("c", CREATED, [], 9)
    unknown = RowCache()  # runs of a store that keeps no epoch are never served
    unknown.complete(unknown.plan("c", CREATED, 1, 5), [(r, 10) for r in log.rows])
    assert not unknown.follows("c", 6, 0)


def test_rows_written_past_a_contexts_share_let_its_oldest_rows_go() -> None:
    cache, log = RowCache(max_bytes=200), _Log(3)  # a context may take 50
    cache.complete(cache.plan("c", CREATED, 1, 3, epoch=1), [(r, 10) for r in log.rows])
    log.append(3)
    cache.extend("c", CREATED, [(r, 10) for r in log.rows[3:]], 1)
    assert cache.size == 50
    assert cache.serve("c", CREATED, 1, 6, 1) is None  # row 1 let go
    assert cache.serve("c", CREATED, 2, 6, 1) == log.rows[1:]
