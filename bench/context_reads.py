"""Context reads over HTTP: ``GET /v1/contexts/{id}/context`` at 1k, 100k and 1M messages.

One SQLite file holds one context per size, filled through the engine in this
process (``Engine.append_batch``, 5,000 messages a batch, ``token_count``
given; the conversation of :mod:`bench.engine_latency`: tool calls and
results, default policy, so the live window stays bounded). Then ``fastpaca
serve`` opens the file as a subprocess and the Python load generator (its own
process) reads the contexts, one client, switching size every ``--round``
reads so background noise hits every size alike.

    .venv/bin/python -m bench reads             # 1k, 100k, 1M (~1.5 min, most of it filling)
    .venv/bin/python -m bench reads --quick     # 1k, 20k

Target: p99 <= 5 ms at the largest size, and its p99 within 20% of the smallest's.
With ``--backends sqlite,postgres`` the same runs on a Postgres schema (``--workers 1``).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastpaca_core import Engine, open_store

from . import _support as s
from .engine_latency import TOKEN_BUDGET, TRIGGER_RATIO, message

P99_LIMIT_MS = 5.0
RATIO_LIMIT = 0.20


async def fill(url: str, sizes: Sequence[int], batch: int) -> dict[int, float]:
    """One context ``r<size>`` per size; seconds each took."""
    took: dict[int, float] = {}
    async with open_store(url) as store:
        engine = Engine(store)
        for size in sizes:
            cid = f"r{size}"
            await engine.put_context(cid, token_budget=TOKEN_BUDGET, trigger_ratio=TRIGGER_RATIO)
            start = time.perf_counter()
            seq = 1
            while seq <= size:
                last = min(size, seq + batch - 1)
                msgs = [message(n, with_tokens=True) for n in range(seq, last + 1)]
                await engine.append_batch(cid, msgs)
                seq = last + 1
            took[size] = time.perf_counter() - start
            print(f"  filled {cid}: {size:,} messages in {took[size]:.1f} s", flush=True)
    return took


def settle(url: str) -> None:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return

    async def vacuum() -> None:
        import asyncpg

        dsn, _, query = url.partition("?")
        schema = dict(p.partition("=")[::2] for p in query.split("&"))["schema"]
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            for table in ("messages", "contexts"):
                await conn.execute(f"VACUUM (ANALYZE) {table}")
        finally:
            await conn.close()

    asyncio.run(vacuum())


def bench_backend(
    backend: str, url: str, args: argparse.Namespace, tmp: Path
) -> list[dict[str, Any]]:
    print(f"reads on {backend}: filling {', '.join(f'{n:,}' for n in args.sizes)}", flush=True)
    took = asyncio.run(fill(url, args.sizes, args.batch))
    settle(url)
    requests = [
        {"method": "GET", "path": f"/v1/contexts/r{size}/context", "expect": 200}
        for size in args.sizes
    ]
    with s.Server.fastpaca(url, tmp / f"reads-{backend}.log") as server:
        result = s.run_loadgen(
            {
                "base": server.base,
                "clients": 1,
                "total": args.n * len(args.sizes),
                "warmup": 1.0,
                "cycle": args.round,
                "requests": requests,
            }
        )
        sixteen = s.run_loadgen(
            {
                "base": server.base,
                "clients": 16,
                "duration": args.seconds,
                "requests": requests[-1:],
            }
        )
    rows = []
    for size, lat in zip(args.sizes, result["per_request"], strict=True):
        rows.append({"backend": backend, "size": size, "fill_s": took[size], "latency_ms": lat})
    rows[-1]["reads_per_s_16_clients"] = sixteen["rps"]
    rows[-1]["latency_ms_16_clients"] = sixteen["latency_ms"]
    if result["errors"] or sixteen["errors"]:
        print(f"  errors: {result['first_error'] or sixteen['first_error']}")
    for r in rows:
        lat = r["latency_ms"]
        print(
            f"  {backend:8} {r['size']:>9,}: p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  "
            f"p99 {lat['p99']:.2f} ms",
            flush=True,
        )
    return rows


def checks(rows: Sequence[dict[str, Any]]) -> list[s.Check]:
    out: list[s.Check] = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["size"])
        small, big = mine[0], mine[-1]
        out.append(
            s.Check(
                f"{backend} context read p99 at {big['size']:,}",
                big["latency_ms"]["p99"],
                P99_LIMIT_MS,
                "ms",
            )
        )
        out.append(
            s.Check(
                f"{backend} read p99 {big['size']:,} vs {small['size']:,}",
                100 * (big["latency_ms"]["p99"] / small["latency_ms"]["p99"] - 1),
                100 * RATIO_LIMIT,
                "%",
            )
        )
    return out


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    head = f"{'backend':8} {'messages':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'fill s':>7}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        lat = r["latency_ms"]
        print(
            f"{r['backend']:8} {r['size']:>9,} {lat['p50']:>8.2f} {lat['p95']:>8.2f} "
            f"{lat['p99']:>8.2f} {r['fill_s']:>7.1f}"
        )
        if "reads_per_s_16_clients" in r:
            print(
                f"{'':8} {'':>9} 16 clients: {r['reads_per_s_16_clients']:,.0f} reads/s, "
                f"p99 {r['latency_ms_16_clients']['p99']:.2f} ms"
            )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench reads", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="sizes 1k and 20k, fewer reads")
    parser.add_argument("--sizes", help="history lengths (1000,100000,1000000; quick 1000,20000)")
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--n", type=int, help="timed reads per size (1500; quick 500)")
    parser.add_argument("--round", type=int, default=50, help="reads per size before switching")
    parser.add_argument("--seconds", type=float, default=5.0, help="16-client run, largest size")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--pg-url", default=s.DEFAULT_PG_URL)
    parser.add_argument("--out", type=Path, default=s.RESULTS / "context_reads.json")
    args = parser.parse_args(argv)
    sizes = args.sizes or ("1000,20000" if args.quick else "1000,100000,1000000")
    args.sizes = sorted({int(x.replace("_", "")) for x in sizes.split(",") if x})
    args.n = args.n or (500 if args.quick else 1500)
    args.seconds = min(args.seconds, 3.0) if args.quick else args.seconds
    args.backends = [b for b in args.backends.split(",") if b]
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastpaca-bench-reads-") as tmp_name:
        tmp = Path(tmp_name)
        for backend in args.backends:
            if backend == "sqlite":
                rows += bench_backend(backend, f"sqlite:///{tmp / 'reads.db'}", args, tmp)
                continue
            problem = s.pg_reachable(args.pg_url)
            if problem:
                skipped[backend] = problem
                continue
            url = s.pg_schema_url(args.pg_url, "reads")
            try:
                rows += bench_backend(backend, url, args, tmp)
            finally:
                s.drop_pg_schema(url)
    data = s.envelope(
        "context_reads",
        {
            "sizes": args.sizes,
            "n": args.n,
            "round": args.round,
            "batch": args.batch,
            "policy": "default (last_n, limit 200)",
            "token_budget": TOKEN_BUDGET,
        },
        args.pg_url,
    )
    data |= {
        "results": rows,
        "skipped": skipped,
        "checks": [c.to_json() for c in checks(rows)],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = run(args)
    print_table(data["results"])
    s.print_checks(data["checks"])
    print(f"\nwrote {s.write_results('context_reads', data, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
