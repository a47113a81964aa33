"""``?schema=NAME``: any name the URL accepts works, from several processes at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from fastpaca_core import Engine
from fastpaca_core.errors import ValidationError
from fastpaca_core.stores.postgres import PostgresStore

pytestmark = pytest.mark.postgres


def _url(pg_url: str, schema: str) -> str:
    """``pg_url`` (the test database, with a schema of its own) naming ``schema``."""
    base = pg_url.rsplit("schema=", 1)[0]
    return f"{base}schema={schema}"


@pytest.fixture
async def schema_url(pg_url: str) -> AsyncIterator[Callable[[str], str]]:
    """URLs of schemas named after a prefix; every schema made is dropped after."""
    made: list[str] = []

    def make(prefix: str) -> str:
        url = _url(pg_url, prefix + uuid.uuid4().hex[:12])
        made.append(url)
        return url

    yield make
    for url in made:
        store = PostgresStore(url)
        await store.open()
        try:
            await store.drop_schema()
        finally:
            await store.close()


async def test_a_schema_named_in_upper_case_is_the_one_used(
    schema_url: Callable[[str], str],
) -> None:
    url = schema_url("Fp_Upper_")
    store = PostgresStore(url)
    await store.open()  # was: "no schema has been selected to create in"
    try:
        engine = Engine(store)
        await engine.put_context("c")
        assert (await engine.append("c", {"role": "user", "parts": []})).version == 1
    finally:
        await store.close()
    other = PostgresStore(url)  # another process finds what the first stored
    await other.open()
    try:
        ctx = await other.get_context("c")
        assert ctx is not None and ctx.version == 1
    finally:
        await other.close()


async def test_a_long_schema_name_still_carries_changes_across_processes(
    schema_url: Callable[[str], str],
) -> None:
    url = schema_url("fp_" + "long" * 12)  # 63 bytes: its channel would have been 72
    a, b = PostgresStore(url), PostgresStore(url)
    await a.open()
    await b.open()
    heard: list[tuple[str, int]] = []
    stop = await a.listen(lambda cid, version: heard.append((cid, version)))
    try:
        assert len(b.channel.encode()) <= 63 and b.channel == a.channel
        engine = Engine(b)
        await engine.put_context("c")
        await engine.append("c", {"role": "user", "parts": []})
        for _ in range(200):
            if ("c", 1) in heard:
                break
            await asyncio.sleep(0.01)
        assert ("c", 1) in heard
    finally:
        await stop()
        await a.close()
        await b.close()


def test_a_schema_name_postgresql_would_cut_short_is_refused(pg_url: str) -> None:
    with pytest.raises(ValidationError, match="at most 63 bytes"):
        PostgresStore(_url(pg_url, "s" * 64))


async def test_processes_opening_a_new_schema_together_all_start(
    schema_url: Callable[[str], str],
) -> None:
    """``fastpaca serve`` started on several machines at once, on a new schema."""
    for _ in range(4):
        url = schema_url("fp_race_")
        stores = [PostgresStore(url, min_size=1, max_size=1) for _ in range(6)]
        opened = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
        try:
            assert [o for o in opened if o is not None] == []
        finally:
            for store in stores:
                await store.close()
