"""Append and context-read latency at 1,000 and 1,000,000 messages of history.

The data model promises that an append (one insert, one update) and a read of
the LLM context (one range scan of the live window) cost the same whatever the
length of the history. This script fills one context per (backend, size)
through the engine, lets the database settle, then times single-message
appends and ``Engine.window`` reads on every size in interleaved rounds (so
background noise hits all sizes alike) and prints percentiles and the ratio
of the largest size to the smallest. Target: within 20%.

    .venv/bin/python -m bench.engine_latency                        # full run
    .venv/bin/python -m bench.engine_latency --sizes 1000,20000     # seconds

SQLite files live in a temporary directory; each Postgres store gets its own
schema (``?schema=``), dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastpaca_core import Engine, Store, StoreUnavailable, open_store

from . import _support

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "engine_latency.json"
CONTEXT_ID = "bench"
TOKEN_BUDGET = 8000
TRIGGER_RATIO = 0.7
TARGET = 0.20  # sizes must be within 20% of each other

_WORDS = (
    "the context holds every message and the window the model sees is cut to "
    "a budget so appends and reads stay cheap as the history grows long while "
    "tools are called and their results come back in order"
).split()


# -- the conversation ---------------------------------------------------------


def _text(index: int, words: int) -> str:
    start = (index * 7) % len(_WORDS)
    return " ".join(_WORDS[(start + k) % len(_WORDS)] for k in range(words))


def message(seq: int, *, with_tokens: bool, base: int = 0) -> dict[str, Any]:
    """The message stored at ``seq``: a system prompt, then a chat with tool calls.

    Every sixth turn is an assistant tool call followed by its tool result, so
    the policy has call/result pairs to keep together. Texts and call ids are
    drawn from ``seq - base``: the timed phase passes the history length as
    ``base``, so every size appends the very same messages and its window
    goes through the same compactions (the sizes must be congruent modulo 6,
    as 1,000 and 1,000,000 are, for the roles to line up too).
    """
    index = seq - base
    if seq == 1:
        msg: dict[str, Any] = {
            "role": "system",
            "parts": [{"type": "text", "text": "You are a helpful assistant. " + _text(0, 30)}],
        }
        tokens = 45
    else:
        turn = (seq - 2) % 6
        call_id = f"call_{index - turn + 3:07d}"
        if turn in (0, 2, 5):
            msg = {"role": "user", "parts": [{"type": "text", "text": _text(index, 20)}]}
            tokens = 28
        elif turn == 3:
            msg = {
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool-search",
                        "toolCallId": call_id,
                        "state": "input-available",
                        "input": {"query": _text(index, 4)},
                    }
                ],
            }
            tokens = 20
        elif turn == 4:
            msg = {
                "role": "tool",
                "parts": [
                    {"type": "tool-result", "toolCallId": call_id, "output": _text(index, 40)}
                ],
            }
            tokens = 55
        else:
            msg = {"role": "assistant", "parts": [{"type": "text", "text": _text(index, 45)}]}
            tokens = 60
    if with_tokens:
        msg["token_count"] = tokens
    return msg


# -- statistics -----------------------------------------------------------------


def summary(samples_ns: Sequence[int]) -> dict[str, float]:
    return _support.summary([sample / 1e6 for sample in samples_ns])


# -- one store per (backend, size) --------------------------------------------


@dataclass
class Target:
    backend: str
    size: int
    url: str
    store: Store
    engine: Engine
    next_seq: int = 1
    populate_s: float = 0.0
    appends_ns: list[int] = field(default_factory=list)
    reads_ns: list[int] = field(default_factory=list)
    window_items: list[int] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)

    async def append_one(self) -> int:
        # realistic: the engine counts tokens; the same messages for every size
        msg = message(self.next_seq, with_tokens=False, base=self.size)
        start = time.perf_counter_ns()
        result = await self.engine.append(CONTEXT_ID, msg)
        elapsed = time.perf_counter_ns() - start
        if result.seqs != [self.next_seq]:
            raise RuntimeError(f"expected seq {self.next_seq}, got {result.seqs}")
        self.next_seq += 1
        return elapsed

    async def read_one(self) -> int:
        start = time.perf_counter_ns()
        window = await self.engine.window(CONTEXT_ID)
        elapsed = time.perf_counter_ns() - start
        self.window_items.append(len(window.items))
        return elapsed


async def populate(target: Target, batch: int) -> None:
    await target.engine.put_context(
        CONTEXT_ID, token_budget=TOKEN_BUDGET, trigger_ratio=TRIGGER_RATIO
    )
    start = time.perf_counter()
    while target.next_seq <= target.size:
        last = min(target.size, target.next_seq + batch - 1)
        msgs = [message(s, with_tokens=True) for s in range(target.next_seq, last + 1)]
        result = await target.engine.append_batch(CONTEXT_ID, msgs)
        if result.seqs[-1] != last:
            raise RuntimeError(f"expected last seq {last}, got {result.seqs[-1]}")
        target.next_seq = last + 1
    target.populate_s = time.perf_counter() - start


async def settle(target: Target) -> None:
    """Put every size in the same steady state before timing.

    SQLite: checkpoint the WAL the bulk load left behind. Postgres: VACUUM
    ANALYZE the tables (what autovacuum would do soon after a bulk load, and
    would otherwise do in the middle of the timed loop) and CHECKPOINT.
    """
    if target.backend == "sqlite":
        path = urlsplit(target.url).path[1:]
        lite = sqlite3.connect(path)
        try:
            lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            lite.close()
        return
    import asyncpg

    schema = getattr(target.store, "schema", None)
    dsn = target.url.split("?", 1)[0]
    conn = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
    try:
        for table in ("messages", "contexts", "events"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        try:
            await conn.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            pass  # not a superuser: the vacuum alone still helps
    finally:
        await conn.close()


async def describe(target: Target) -> None:
    window = await target.engine.window(CONTEXT_ID)
    ctx = await target.engine.get_context(CONTEXT_ID)
    target.final = {
        "last_seq": ctx.last_seq,
        "version": ctx.version,
        "live_from_seq": ctx.live_from_seq,
        "prefix_entries": len(ctx.prefix),
        "window_items": len(window.items),
        "used_tokens": window.used_tokens,
        "needs_compaction": window.needs_compaction,
        "db_bytes": await db_bytes(target),
    }


async def db_bytes(target: Target) -> int:
    if target.backend == "sqlite":
        path = urlsplit(target.url).path[1:]
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    import asyncpg

    conn = await asyncpg.connect(target.url.split("?", 1)[0])
    try:
        value = await conn.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind = 'r'",
            getattr(target.store, "schema", None),
        )
    finally:
        await conn.close()
    return int(value)


async def open_targets(
    backend: str, sizes: Sequence[int], tmp: str, pg_url: str, run_id: str
) -> list[Target]:
    targets: list[Target] = []
    for size in sizes:
        if backend == "sqlite":
            url = f"sqlite:///{tmp}/bench_{size}.db"
        else:
            sep = "&" if "?" in pg_url else "?"
            url = f"{pg_url}{sep}schema=bench_{run_id}_{size}"
        store = open_store(url)
        targets.append(Target(backend, size, url, store, Engine(store)))
        await store.open()
    return targets


async def close_targets(targets: Sequence[Target]) -> None:
    for target in targets:
        drop: Callable[[], Awaitable[None]] | None = getattr(target.store, "drop_schema", None)
        try:
            if drop is not None:
                await drop()
        finally:
            await target.store.close()


async def timed_rounds(targets: Sequence[Target], n: int, warmup: int, round_size: int) -> None:
    """Warm up, then alternate sizes every ``round_size`` appends and reads."""
    for target in targets:
        for _ in range(warmup):
            await target.append_one()
            await target.read_one()
        target.window_items.clear()
    done = 0
    while done < n:
        step = min(round_size, n - done)
        for target in targets:
            for _ in range(step):
                target.appends_ns.append(await target.append_one())
            for _ in range(step):
                target.reads_ns.append(await target.read_one())
        done += step


async def bench_backend(
    backend: str, sizes: Sequence[int], args: argparse.Namespace, tmp: str, run_id: str
) -> list[Target]:
    targets: list[Target] = []
    try:
        targets = await open_targets(backend, sizes, tmp, args.pg_url, run_id)
        for target in targets:
            await populate(target, args.batch)
            await settle(target)
            rate = target.size / target.populate_s if target.populate_s else 0.0
            print(
                f"  {backend:8} {target.size:>9,} msgs loaded in {target.populate_s:6.1f} s "
                f"({rate:,.0f} msg/s)",
                flush=True,
            )
        await timed_rounds(targets, args.n, args.warmup, args.round)
        for target in targets:
            await describe(target)
    finally:
        await close_targets(targets)
    return targets


# -- output ---------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def report(
    targets: Sequence[Target], skipped: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for t in targets:
        rows.append(
            {
                "backend": t.backend,
                "size": t.size,
                "populate_seconds": round(t.populate_s, 3),
                "append_ms": summary(t.appends_ns),
                "window_ms": summary(t.reads_ns),
                "window_items_min": min(t.window_items),
                "window_items_max": max(t.window_items),
                "final": t.final,
            }
        )
    ratios: list[dict[str, Any]] = []
    for backend in dict.fromkeys(t.backend for t in targets):
        mine = sorted((r for r in rows if r["backend"] == backend), key=lambda r: r["size"])
        if len(mine) < 2:
            continue
        small, big = mine[0], mine[-1]
        for op in ("append_ms", "window_ms"):
            entry: dict[str, Any] = {
                "backend": backend,
                "op": op.removesuffix("_ms"),
                "sizes": [small["size"], big["size"]],
            }
            for stat in ("p50", "p99", "mean"):
                entry[stat] = big[op][stat] / small[op][stat]
            entry["within_target"] = abs(entry["p50"] - 1) <= TARGET
            ratios.append(entry)
    return {
        "benchmark": "engine_latency",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "sizes": args.sizes,
            "backends": args.backends,
            "n": args.n,
            "warmup": args.warmup,
            "round": args.round,
            "batch": args.batch,
            "token_budget": TOKEN_BUDGET,
            "trigger_ratio": TRIGGER_RATIO,
            "policy": "default (last_n, limit 200)",
            "target": f"largest/smallest within {TARGET:.0%}",
        },
        "results": rows,
        "ratios": ratios,
        "skipped": skipped,
    }


def print_report(data: dict[str, Any]) -> None:
    m = data["machine"]
    print()
    print(f"machine: nproc={m['nproc']}  python={m['python']}  {m['platform']}")
    c = data["config"]
    print(
        f"n={c['n']} timed ops per series (warm-up {c['warmup']}), rounds of {c['round']}; "
        f"budget {c['token_budget']}, trigger {c['trigger_ratio']}, {c['policy']}"
    )
    print()
    head = (
        f"{'backend':8} {'size':>9} {'op':7} {'p50':>8} {'p95':>8} {'p99':>8} {'mean':>8} "
        f"{'max':>8}  {'window':>9}  {'load s':>7}"
    )
    print(head + "\n" + "-" * len(head))
    for r in data["results"]:
        for op in ("append", "window"):
            s = r[f"{op}_ms"]
            items = f"{r['window_items_min']}-{r['window_items_max']}" if op == "window" else ""
            load = f"{r['populate_seconds']:7.1f}" if op == "append" else ""
            print(
                f"{r['backend']:8} {r['size']:>9,} {op:7} {s['p50']:8.3f} {s['p95']:8.3f} "
                f"{s['p99']:8.3f} {s['mean']:8.3f} {s['max']:8.3f}  {items:>9}  {load:>7}"
            )
    print("(milliseconds; 'window' = items in the LLM context read)")
    if data["ratios"]:
        print()
        print(f"{'backend':8} {'op':7} {'ratio':>17} {'p50':>6} {'p99':>6} {'mean':>6}  target")
        for q in data["ratios"]:
            label = f"{q['sizes'][1]:,}/{q['sizes'][0]:,}"
            verdict = "ok" if q["within_target"] else f"MISSED (p50 off by >{TARGET:.0%})"
            print(
                f"{q['backend']:8} {q['op']:7} {label:>17} {q['p50']:6.2f} {q['p99']:6.2f} "
                f"{q['mean']:6.2f}  {verdict}"
            )
    for backend, why in data["skipped"].items():
        print(f"skipped {backend}: {why}")


# -- main -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="1000,1000000", help="history lengths (comma-separated)")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--n", type=int, default=500, help="timed appends and reads per series")
    parser.add_argument("--warmup", type=int, default=50, help="untimed appends+reads first")
    parser.add_argument("--round", type=int, default=25, help="ops per size before switching")
    parser.add_argument("--batch", type=int, default=5000, help="messages per append_batch")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("FASTPACA_BENCH_PG", DEFAULT_PG_URL),
        help="Postgres URL (env FASTPACA_BENCH_PG)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - {"sqlite", "postgres"}
    if unknown or not args.sizes or min(args.sizes) < 1 or args.n < 1 or args.round < 1:
        parser.error("sizes must be >= 1, n and round >= 1, backends sqlite and/or postgres")
    if len({size % 6 for size in args.sizes}) > 1:
        print("note: sizes not congruent modulo 6: the windows will differ in shape", flush=True)
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = f"{os.getpid()}_{secrets.token_hex(3)}"
    targets: list[Target] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fastpaca-bench-") as tmp:
        for backend in args.backends:
            print(f"{backend}: loading {', '.join(f'{s:,}' for s in args.sizes)}", flush=True)
            try:
                targets.extend(await bench_backend(backend, args.sizes, args, tmp, run_id))
            except (StoreUnavailable, ImportError) as exc:
                skipped[backend] = str(exc)
                print(f"  skipped: {exc}", flush=True)
    return report(targets, skipped, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = asyncio.run(run(args))
    print_report(data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0 if all(q["within_target"] for q in data["ratios"]) else 1


if __name__ == "__main__":
    sys.exit(main())
