"""Several OS processes appending to one context on one Postgres."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from fastpaca_core import Engine, open_store

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from fastpaca_core import Engine, open_store

    async def main(url, name, count):
        async with open_store(url) as store:
            engine = Engine(store)
            async def one(i):
                msg = {"role": "user", "parts": [{"type": "text", "text": f"{name}-{i}"}]}
                await engine.append("shared", msg, idempotency_key=f"{name}-{i}")
            await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


@pytest.mark.postgres
async def test_two_processes_append_gapless(pg_url: str) -> None:
    async with open_store(pg_url) as store:
        await Engine(store).put_context("shared", policy={"strategy": "manual"})
    count = 60
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            pg_url,
            name,
            str(count),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("alpha", "beta")
    ]
    for proc in procs:
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    async with open_store(pg_url) as store:
        engine = Engine(store)
        ctx = await engine.get_context("shared")
        rows = await engine.messages("shared", limit=1000)
    assert ctx.last_seq == 2 * count
    assert ctx.version == 2 * count
    assert [r.seq for r in rows] == list(range(1, 2 * count + 1))
    texts = sorted(r.parts[0]["text"] for r in rows)
    assert texts == sorted(f"{n}-{i}" for n in ("alpha", "beta") for i in range(count))
    assert rows[-1].cum_tokens == sum(r.token_count for r in rows)
