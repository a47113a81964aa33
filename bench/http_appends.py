"""HTTP appends: durable throughput and p50/p95/p99 latency at 1, 16 and 64 clients.

``fastpaca serve`` runs as a subprocess (SQLite: WAL + synchronous=FULL, so an
acknowledged append is on disk; Postgres: its own schema, ``--workers 2``),
and the load comes from another process: ``wrk`` (one thread and one
connection per client; installed with apt-get when missing and root) or the
Python generator (``--loadgen python``). Each client appends to its own
context (``own``) or all clients append to one context (``shared``). Each
message is a ~30-word user turn whose tokens the server counts.

    .venv/bin/python -m bench appends            # full (~2.5 min)
    .venv/bin/python -m bench appends --quick    # ~40 s

After each run the contexts' ``last_seq`` are read back: every acknowledged
append must be stored (``stored`` >= ``acked``; the excess is requests still
in flight when the load generator stopped counting).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _support as s
from ._wrk import ensure_wrk, run_wrk

TEXT = (
    "Can you look at the deployment logs from last night and tell me why the "
    "checkout service kept restarting after the config change we pushed at nine?"
)
BODY = json.dumps({"message": {"role": "user", "parts": [{"type": "text", "text": TEXT}]}})
ANCHOR = "original Fastpaca: ~800 durable appends/s, p99 ~62 ms (2 vCPU)"


class Loader:
    """Drives ``clients`` concurrent appenders with wrk or the Python generator."""

    def __init__(self, choice: str) -> None:
        self.wrk: str | None = None
        self.how = "python (bench.loadgen, aiohttp)"
        if choice in ("auto", "wrk"):
            self.wrk, found = ensure_wrk()
            if self.wrk is not None:
                self.how = f"wrk ({found})"
            elif choice == "wrk":
                raise SystemExit(f"--loadgen wrk: {found}")
            else:
                self.how += f"; {found}"

    def run(self, base: str, paths: Sequence[str], clients: int, seconds: float) -> dict[str, Any]:
        if self.wrk is not None:
            return run_wrk(self.wrk, base, paths, clients, seconds, body=BODY)
        spec = {
            "base": base,
            "clients": clients,
            "duration": seconds,
            "requests": [{"method": "POST", "path": p, "body": BODY, "expect": 201} for p in paths],
        }
        return s.run_loadgen(spec)


def one_run(
    server: s.Server,
    label: dict[str, Any],
    variant: str,
    clients: int,
    args: argparse.Namespace,
    loader: Loader,
) -> dict[str, Any]:
    tag = f"{variant}-{clients}-{os.urandom(3).hex()}"
    ids = [f"{tag}-{i}" for i in range(clients)] if variant == "own" else [tag]
    paths = [f"/v1/contexts/{cid}/messages" for cid in ids]
    s.put_contexts(server.base, ids, args.context_config)
    if args.warmup > 0:
        loader.run(server.base, paths, clients, args.warmup)
    before = sum(s.last_seqs(server.base, ids).values())
    cpu_before = server.cpu_seconds()
    result = loader.run(server.base, paths, clients, args.seconds)
    cpu = server.cpu_seconds() - cpu_before
    stored = sum(s.last_seqs(server.base, ids).values()) - before
    row = {
        **label,
        "variant": variant,
        "clients": clients,
        "appends_per_s": result["rps"],
        "latency_ms": result["latency_ms"],
        "acked": result["ok"],
        "errors": result["errors"],
        "stored": stored,
        "all_acked_stored": stored >= result["ok"],
        "server_cpu_us_per_append": 1e6 * cpu / stored if stored else None,
        "seconds": result["seconds"],
    }
    lat = row["latency_ms"]
    print(
        f"  {label['backend']:8} w={label['workers']} {variant:6} {clients:>3} clients: "
        f"{row['appends_per_s']:8,.0f}/s  p50 {lat['p50']:7.2f}  p95 {lat['p95']:7.2f}  "
        f"p99 {lat['p99']:7.2f} ms  errors {row['errors']}  stored {stored:,}/{result['ok']:,}  "
        f"server CPU {row['server_cpu_us_per_append'] or 0:.0f} us/append",
        flush=True,
    )
    return row


def bench_server(
    store: str,
    label: dict[str, Any],
    args: argparse.Namespace,
    loader: Loader,
    tmp: Path,
    plan: Sequence[tuple[str, int]],
) -> tuple[list[dict[str, Any]], float]:
    rows: list[dict[str, Any]] = []
    log = tmp / f"{label['backend']}-{label['workers']}.log"
    server = s.Server.fastpaca(store, log, "--workers", str(label["workers"]))
    with server:
        for variant, clients in plan:
            rows.append(one_run(server, label, variant, clients, args, loader))
        rss = server.rss_mb()
    if server.exit_code != 0:
        print(f"  WARNING: server exited with {server.exit_code}; see {log}")
    return rows, rss


def checks(rows: Sequence[dict[str, Any]]) -> list[s.Check]:
    def find(backend: str, workers: int, clients: int = 64) -> dict[str, Any] | None:
        for r in rows:
            if (r["backend"], r["workers"], r["variant"], r["clients"]) == (
                backend,
                workers,
                "own",
                clients,
            ):
                return r
        return None

    sqlite = find("sqlite", 1)
    pg = find("postgres", 2)
    return [
        s.Check(
            "SQLite 64 clients appends/s",
            sqlite["appends_per_s"] if sqlite else None,
            5000,
            "/s",
            at_least=True,
            note="durable: WAL + synchronous=FULL",
        ),
        s.Check(
            "SQLite 64 clients append p99",
            sqlite["latency_ms"]["p99"] if sqlite else None,
            25,
            "ms",
        ),
        s.Check(
            "Postgres 2 workers 64 clients appends/s",
            pg["appends_per_s"] if pg else None,
            4000,
            "/s",
            at_least=True,
        ),
    ]


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    head = (
        f"{'backend':8} {'workers':>7} {'variant':7} {'clients':>7} {'appends/s':>10} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'stored>=acked':>13} "
        f"{'CPU us/append':>13}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        lat = r["latency_ms"]
        print(
            f"{r['backend']:8} {r['workers']:>7} {r['variant']:7} {r['clients']:>7} "
            f"{r['appends_per_s']:>10,.0f} {lat['p50']:>8.2f} {lat['p95']:>8.2f} "
            f"{lat['p99']:>8.2f} {r['errors']:>6} {str(r['all_acked_stored']):>13} "
            f"{r['server_cpu_us_per_append'] or 0:>13.0f}"
        )
    print(f"(anchor: {ANCHOR})")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench appends", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 s warm-up")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--clients", default="1,16,64", help="concurrency levels")
    parser.add_argument("--variants", default="own,shared", help="own and/or shared context")
    parser.add_argument("--seconds", type=float, help="timed seconds per run (8; quick 3)")
    parser.add_argument("--warmup", type=float, help="untimed seconds first (2; quick 1)")
    parser.add_argument(
        "--pg-workers", default="2,1", help="Postgres server processes; the 2nd+ at 64 own only"
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--context-config",
        type=json.loads,
        default=None,
        help='PUT body for the contexts, e.g. \'{"policy":{"strategy":"manual"}}\' '
        "(default: the server's defaults)",
    )
    parser.add_argument("--pg-url", default=s.DEFAULT_PG_URL)
    parser.add_argument("--out", type=Path, default=s.RESULTS / "http_appends.json")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (3.0 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.backends = [b for b in args.backends.split(",") if b]
    args.clients = [int(c) for c in args.clients.split(",") if c]
    args.variants = [v for v in args.variants.split(",") if v]
    args.pg_workers = [int(w) for w in args.pg_workers.split(",") if w]
    if set(args.backends) - {"sqlite", "postgres"} or set(args.variants) - {"own", "shared"}:
        parser.error("backends: sqlite, postgres; variants: own, shared")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    loader = Loader(args.loadgen)
    print(f"appends: load generator {loader.how}", flush=True)
    plan = [(v, c) for v in args.variants for c in args.clients]
    rows: list[dict[str, Any]] = []
    rss: dict[str, float] = {}
    skipped: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastpaca-bench-appends-") as tmp_name:
        tmp = Path(tmp_name)
        if "sqlite" in args.backends:
            try:
                got, mb = bench_server(
                    f"sqlite:///{tmp / 'appends.db'}",
                    {"backend": "sqlite", "workers": 1},
                    args,
                    loader,
                    tmp,
                    plan,
                )
                rows += got
                rss["sqlite"] = mb
            except RuntimeError as exc:
                skipped["sqlite"] = str(exc)
                print(f"  sqlite failed: {exc}")
        if "postgres" in args.backends:
            problem = s.pg_reachable(args.pg_url)
            if problem:
                skipped["postgres"] = problem
                print(f"  skipped postgres: {problem}")
            for index, workers in enumerate([] if problem else args.pg_workers):
                url = s.pg_schema_url(args.pg_url, "appends")
                label = {"backend": "postgres", "workers": workers}
                # the first worker count gets the whole plan; the others the 64-client run
                sub = plan if index == 0 else [("own", max(args.clients))]
                try:
                    got, mb = bench_server(url, label, args, loader, tmp, sub)
                    rows += got
                    rss[f"postgres_w{workers}"] = mb
                except RuntimeError as exc:
                    skipped[f"postgres_w{workers}"] = str(exc)
                    print(f"  postgres w={workers} failed: {exc}")
                finally:
                    s.drop_pg_schema(url)
    data = s.envelope(
        "http_appends",
        {
            "loadgen": loader.how,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "clients": args.clients,
            "variants": args.variants,
            "pg_workers": args.pg_workers,
            "body_bytes": len(BODY),
            "context_config": args.context_config,
            "anchor": ANCHOR,
        },
        args.pg_url,
    )
    data |= {
        "results": rows,
        "server_rss_mb_at_end": rss,
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
    print(f"\nwrote {s.write_results('http_appends', data, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
