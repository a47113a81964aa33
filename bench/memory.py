"""Server memory: RSS after 100,000 appends, after a second 100,000, after 10,000 proxied calls.

One ``fastpaca serve`` (SQLite) as a subprocess, its proxy pointed at the fake
upstream (``python -m fastpaca_proxy.fake_upstream``, another subprocess). The
Python load generator (a third process) sends single-message appends from 64
clients, each to its own context, then OpenAI chat completions through
``POST /v1/contexts/{id}/openai/chat/completions`` from 64 clients, each in its
own context. RSS is read from ``/proc/<pid>/status`` after each phase.

    .venv/bin/python -m bench memory            # 100,000 + 100,000 appends, 10,000 calls
    .venv/bin/python -m bench memory --quick    # 20,000 + 20,000, 2,000

Targets: RSS <= 150 MB after the first 100,000 appends; no growth over the
second 100,000 (allowed: 5 MB of allocator noise).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _support as s
from .http_appends import BODY

RSS_LIMIT_MB = 150.0
GROWTH_LIMIT_MB = 5.0
APPEND_CLIENTS = 64
PROXY_CLIENTS = 64
PROXY_BODY = json.dumps(
    {"model": "gpt-test", "messages": [{"role": "user", "content": "turn {n}: what changed?"}]}
)


def phase(server: s.Server, spec: dict[str, Any], label: str) -> dict[str, Any]:
    start = time.perf_counter()
    result = s.run_loadgen({"base": server.base, **spec})
    rss = server.rss_mb()
    row = {
        "phase": label,
        "requests": result["ok"],
        "errors": result["errors"],
        "per_s": result["rps"],
        "latency_ms": result["latency_ms"],
        "rss_mb": rss,
        "seconds": time.perf_counter() - start,
    }
    print(
        f"  {label:28} {row['requests']:>7,} ok  {row['errors']} errors  "
        f"{row['per_s']:7,.0f}/s  RSS {rss:6.1f} MB",
        flush=True,
    )
    if result["errors"]:
        print(f"    first error: {result['first_error']}")
    return row


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fifth of the requests")
    parser.add_argument("--appends", type=int, help="appends per phase (100000; quick 20000)")
    parser.add_argument("--calls", type=int, help="proxied calls (10000; quick 2000)")
    parser.add_argument("--out", type=Path, default=s.RESULTS / "memory.json")
    args = parser.parse_args(argv)
    args.appends = args.appends or (20_000 if args.quick else 100_000)
    args.calls = args.calls or (2_000 if args.quick else 10_000)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    append_ids = [f"mem-{i}" for i in range(APPEND_CLIENTS)]
    appends = {
        "clients": APPEND_CLIENTS,
        "total": args.appends,
        "requests": [
            {"method": "POST", "path": f"/v1/contexts/{c}/messages", "body": BODY, "expect": 201}
            for c in append_ids
        ],
    }
    proxied = {
        "clients": PROXY_CLIENTS,
        "total": args.calls,
        "requests": [
            {
                "method": "POST",
                "path": f"/v1/contexts/proxy-{i}/openai/chat/completions",
                "body": PROXY_BODY,
                "expect": 200,
            }
            for i in range(PROXY_CLIENTS)
        ],
    }
    with tempfile.TemporaryDirectory(prefix="fastpaca-bench-memory-") as tmp_name:
        tmp = Path(tmp_name)
        with s.Server.fake_upstream(tmp / "fake.log") as fake:
            server = s.Server.fastpaca(
                f"sqlite:///{tmp / 'memory.db'}",
                tmp / "serve.log",
                "--openai-base-url",
                f"{fake.base}/v1",
            )
            with server:
                s.put_contexts(server.base, append_ids)
                rows.append({"phase": "started (contexts created)", "rss_mb": server.rss_mb()})
                print(f"  started: RSS {rows[-1]['rss_mb']:.1f} MB", flush=True)
                rows.append(phase(server, appends, f"after {args.appends:,} appends"))
                rows.append(phase(server, appends, f"after {2 * args.appends:,} appends"))
                rows.append(phase(server, proxied, f"after {args.calls:,} proxied calls"))
    first, second = rows[1]["rss_mb"], rows[2]["rss_mb"]
    checks = [
        s.Check(f"RSS after {args.appends:,} appends", first, RSS_LIMIT_MB, "MB"),
        s.Check(f"RSS growth over next {args.appends:,}", second - first, GROWTH_LIMIT_MB, "MB"),
    ]
    data = s.envelope(
        "memory",
        {
            "appends_per_phase": args.appends,
            "proxied_calls": args.calls,
            "append_clients": APPEND_CLIENTS,
            "proxy_clients": PROXY_CLIENTS,
            "store": "sqlite",
        },
    )
    data |= {
        "results": rows,
        "checks": [c.to_json() for c in checks],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    return data


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print(f"\n{'phase':32} {'requests':>9} {'per s':>7} {'RSS MB':>7}")
    print("-" * 58)
    for r in rows:
        requests = f"{r['requests']:,}" if "requests" in r else ""
        per_s = f"{r['per_s']:,.0f}" if "per_s" in r else ""
        print(f"{r['phase']:32} {requests:>9} {per_s:>7} {r['rss_mb']:>7.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = run(args)
    print_table(data["results"])
    s.print_checks(data["checks"])
    print(f"\nwrote {s.write_results('memory', data, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
