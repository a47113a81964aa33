"""What ``NOTIFY`` inside a write transaction costs Postgres, without Fastpaca in the way.

32 asyncpg connections (``--conns``) commit small inserts as fast as they can,
in three variants, interleaved ``--rounds`` times:

- ``none``: ``BEGIN; INSERT; COMMIT``;
- ``in-tx``: ``BEGIN; INSERT; SELECT pg_notify(...); COMMIT`` (what the
  Postgres store does on every write);
- ``after``: ``BEGIN; INSERT; COMMIT`` then ``SELECT pg_notify(...)`` on its own;
- ``single``: the ``INSERT`` alone, committing by itself (one round trip);
- ``coalesced``: ``single``, plus the hint through the store's
  :class:`~fastpaca_core.stores._pglisten.Notifier` (one ``pg_notify``
  statement in flight per process, carrying every hint since the last): what
  the Postgres store does for an append.

A transaction that has notified takes a database-wide lock at commit and holds
it until the commit is durable, so notifying commits cannot share a WAL flush:
``in-tx`` caps the commit rate near one per flush.

    .venv/bin/python -m bench pg_notify
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _support as s

VARIANTS = ("none", "in-tx", "after", "single", "coalesced")


async def one(dsn: str, schema: str, variant: str, conns: int, seconds: float) -> float:
    import asyncpg

    pool = await asyncpg.create_pool(  # + 1: the coalesced variant's notifier
        dsn, min_size=conns + 1, max_size=conns + 1, server_settings={"search_path": schema}
    )
    from fastpaca_core.stores._pglisten import Notifier

    done = 0
    stop = time.perf_counter() + seconds

    async def send(payloads: list[str]) -> None:
        async with pool.acquire() as conn:
            await conn.execute(
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", schema, payloads
            )

    notifier = Notifier(send, "bench")

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.perf_counter() < stop:
                if variant in ("single", "coalesced"):
                    await conn.execute("INSERT INTO log (v) VALUES ($1)", "x" * 200)
                    if variant == "coalesced":
                        notifier.add(f"c{done % 64}", done)
                    done += 1
                    continue
                async with conn.transaction():
                    await conn.execute("INSERT INTO log (v) VALUES ($1)", "x" * 200)
                    if variant == "in-tx":
                        await conn.execute("SELECT pg_notify($1, 'x')", schema)
                if variant == "after":
                    await conn.execute("SELECT pg_notify($1, 'x')", schema)
                done += 1

    try:
        await asyncio.gather(*(worker() for _ in range(conns)))
        await notifier.drain(5.0)
    finally:
        await pool.close()
    return done / seconds


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    import asyncpg

    dsn = args.pg_url.split("?", 1)[0]
    schema = f"bench_notify_{os.getpid()}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    await admin.execute(f'CREATE TABLE "{schema}".log (id bigserial PRIMARY KEY, v text)')
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        for _ in range(args.rounds):
            for variant in VARIANTS:
                rate = await one(dsn, schema, variant, args.conns, args.seconds)
                rates[variant].append(rate)
                print(f"  {variant:9} {rate:8,.0f} commits/s", flush=True)
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench pg_notify", description=__doc__)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pg-url", default=s.DEFAULT_PG_URL)
    parser.add_argument("--out", type=Path, default=s.RESULTS / "pg_notify.json")
    args = parser.parse_args(argv)
    problem = s.pg_reachable(args.pg_url)
    if problem:
        print(f"pg_notify: skipped: {problem}")
        return 0
    rates = asyncio.run(measure(args))
    medians = {v: statistics.median(r) for v, r in rates.items()}
    print(f"\nmedian commits/s with {args.conns} connections:")
    for variant, rate in medians.items():
        print(f"  {variant:9} {rate:8,.0f}  ({rate / medians['none']:.0%} of none)")
    data: dict[str, Any] = s.envelope(
        "pg_notify", {"conns": args.conns, "seconds": args.seconds, "rounds": args.rounds}
    )
    data |= {"rates": rates, "median": medians, "checks": []}
    print(f"\nwrote {s.write_results('pg_notify', data, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
