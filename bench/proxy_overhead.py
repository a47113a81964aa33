"""Proxy overhead: the same LLM calls made directly to the fake upstream and through Fastpaca.

The fake upstream (``python -m fastpaca_proxy.fake_upstream``) and the
Fastpaca server (``fastpaca serve``, SQLite store) each run as their own
subprocess; this process is the load generator (asyncio + aiohttp). Every call
through the proxy names a context in its path, so the whole proxy path runs:
read and align the history, compact the window, forward, store the turn.

Scenarios, each measured direct-to-fake and through the proxy:

1. non-streaming, one connection, sequential (OpenAI Chat and Anthropic
   Messages): p50/p99 latency and the added ms;
2. non-streaming, 64 concurrent connections: throughput and p50/p99;
3. streaming, the fake sending 64 chunks 20 ms apart: added time to the first
   chunk, and the gaps between consecutive chunks.

Each client conversation lasts ``--turns`` turns in a fresh context, either
resending its whole history every turn (``resend``, the common case) or
sending only its newest message (``newest``). A direct call is always the
same LLM call as the proxied one, the whole conversation: with ``newest``,
the proxied client sends only its newest message, and the call it is compared
with sends what the model receives through the proxy either way (comparing
with a direct call of one message would charge the proxy for the upstream
reading a longer prompt, which it must for the answer to follow the
conversation: ~0.09 ms at the fake upstream for a 16-turn conversation).

    .venv/bin/python -m bench.proxy_overhead            # full run (~2.5 min)
    .venv/bin/python -m bench.proxy_overhead --quick    # ~30 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from ._support import percentile
from .engine_latency import machine
from .proxy_clients import Conversation, Servers, Side, _conversation, _session

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "proxy_overhead.json"
TARGET_ADDED_P50_MS = 1.0  # scenario 1: added at p50, one connection, no streaming
TARGET_FIRST_CHUNK_MS = 2.0  # scenario 3: added to the first chunk (p50)
TARGET_GAP_P99_MS = 1.0  # scenario 3: added to the gap between chunks, at p99
ROUTES = ("openai_chat", "anthropic")
MODES = ("resend", "newest")
SIDES = ("direct", "passthru", "proxy")

# -- statistics -----------------------------------------------------------------


def summary(samples_ms: Sequence[float]) -> dict[str, float]:
    ms = sorted(samples_ms)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms),
        "max": ms[-1],
    }


def added(direct: dict[str, float], proxy: dict[str, float]) -> dict[str, float]:
    return {k: proxy[k] - direct[k] for k in ("p50", "p90", "p99", "mean", "max") if k in direct}


# -- the two processes ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env() -> dict[str, str]:
    # A developer's FASTPACA_* settings (API keys, store...) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPACA_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for(what: str, proc: subprocess.Popen[bytes], log: Path, ready: Any) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        value = ready()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start in 30 s:\n{log.read_text()[-2000:]}")


def start_servers(args: argparse.Namespace, tmp: Path) -> Servers:
    procs: list[subprocess.Popen[bytes]] = []
    env = _child_env()
    try:
        fake_log = tmp / "fake.log"
        fake_cmd = [sys.executable, "-m", "fastpaca_proxy.fake_upstream", "--port", "0"]
        fake_cmd += ["--chunks", str(args.chunks), "--delay", str(args.delay)]
        with fake_log.open("wb") as out:
            fake = subprocess.Popen(fake_cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        procs.append(fake)

        def fake_ready() -> str | None:
            for word in fake_log.read_text().split():
                if word.startswith("http://127.0.0.1:") and not word.endswith("/v1)"):
                    return word
            return None

        fake_url = str(_wait_for("fake upstream", fake, fake_log, fake_ready))
        port = _free_port()
        store_url = args.store or f"sqlite:///{tmp}/b.db"
        serve_log = tmp / "serve.log"
        serve_cmd = [sys.executable, "-m", "fastpaca_core.cli", "serve", "--store", store_url]
        serve_cmd += ["--openai-base-url", f"{fake_url}/v1", "--anthropic-base-url", fake_url]
        serve_cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
        with serve_log.open("wb") as out:
            serve = subprocess.Popen(serve_cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        procs.append(serve)
        proxy_url = f"http://127.0.0.1:{port}"

        def serve_ready() -> bool:
            try:
                with urllib.request.urlopen(f"{proxy_url}/health/ready", timeout=1) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        _wait_for("fastpaca serve", serve, serve_log, serve_ready)
    except BaseException:
        stop_servers(procs)
        raise
    return Servers(fake_url, proxy_url, store_url, procs, {"fake": fake.pid, "serve": serve.pid})


def stop_servers(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- scenarios ------------------------------------------------------------------------


async def sequential(
    servers: Servers, route: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Scenario 1: one connection each way; alternate rounds of direct and proxied calls."""
    run = secrets.token_hex(3)
    sides = [Side(name, servers, route, args.budget) for name in SIDES]
    convs = [_conversation(f"s1-{run}-{s.name}", s.name, route, mode, args) for s in sides]
    samples: dict[str, list[float]] = {name: [] for name in SIDES}
    async with _session(1) as d_session, _session(1) as t_session, _session(1) as p_session:
        sessions = [d_session, t_session, p_session]
        for side, conv, session in zip(sides, convs, sessions, strict=True):
            for _ in range(args.warmup):
                await side.call(session, conv)
        done = 0
        while done < args.requests:
            step = min(args.round, args.requests - done)
            for side, conv, session in zip(sides, convs, sessions, strict=True):
                for _ in range(step):
                    samples[side.name].append(await side.call(session, conv))
            done += step
    direct, proxy = summary(samples["direct"]), summary(samples["proxy"])
    passthru = summary(samples["passthru"])
    return {
        "scenario": "sequential",
        "route": route,
        "mode": mode,
        "direct_ms": direct,
        "passthru_ms": passthru,
        "proxy_ms": proxy,
        "added_ms": added(direct, proxy),
        "passthru_added_ms": added(direct, passthru),
        "target": f"added p50 <= {TARGET_ADDED_P50_MS} ms",
        "ok": added(direct, proxy)["p50"] <= TARGET_ADDED_P50_MS,
        "missing_headers": sides[-1].missing_headers,
    }


async def _load(
    side: Side, route: str, mode: str, args: argparse.Namespace, total: int
) -> tuple[list[float], float]:
    run = secrets.token_hex(3)
    convs = [
        _conversation(f"s2-{run}-{side.name}-{i}", side.name, route, mode, args)
        for i in range(args.concurrency)
    ]
    latencies: list[float] = []
    remaining = total

    async def worker(session: aiohttp.ClientSession, conv: Conversation) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            latencies.append(await side.call(session, conv))

    async with _session(args.concurrency) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session, c) for c in convs))
        wall = time.perf_counter() - start
    return latencies, wall


async def concurrent(
    servers: Servers, route: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Scenario 2: ``--concurrency`` connections, each a client in its own context."""
    out: dict[str, Any] = {"scenario": "concurrent", "route": route, "mode": mode}
    for name in SIDES:
        side = Side(name, servers, route, args.budget)
        await _load(side, route, mode, args, args.concurrency * 2)  # warm-up: connections
        latencies, wall = await _load(side, route, mode, args, args.concurrent_requests)
        out[f"{name}_ms"] = summary(latencies)
        out[f"{name}_rps"] = len(latencies) / wall
        if name == "proxy":
            out["missing_headers"] = side.missing_headers
    out["added_ms"] = added(out["direct_ms"], out["proxy_ms"])
    out["passthru_added_ms"] = added(out["direct_ms"], out["passthru_ms"])
    out["throughput_ratio"] = out["proxy_rps"] / out["direct_rps"]
    return out


async def streaming(
    servers: Servers, route: str, mode: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Scenario 3: ``--stream-workers`` clients, each alternating direct and proxied streams.

    Workers start staggered over one stream's duration, so their requests
    rarely arrive at the same instant; direct and proxied calls share the same
    background load.
    """
    run = secrets.token_hex(3)
    sides = {name: Side(name, servers, route, args.budget) for name in ("direct", "proxy")}
    firsts: dict[str, list[float]] = {"direct": [], "proxy": []}
    gaps: dict[str, list[float]] = {"direct": [], "proxy": []}
    last_gaps: dict[str, list[float]] = {"direct": [], "proxy": []}
    per_worker = max(1, -(-args.stream_requests // args.stream_workers))
    stagger = args.chunks * args.delay / args.stream_workers

    async def worker(index: int) -> None:
        await asyncio.sleep(index * stagger)
        convs = {n: _conversation(f"s3-{run}-{n}-{index}", n, route, mode, args) for n in sides}
        async with _session(1) as d_session, _session(1) as p_session:
            sessions = {"direct": d_session, "proxy": p_session}
            for name in sides:  # warm-up: one stream each way
                await sides[name].stream(sessions[name], convs[name])
            for k in range(per_worker * 2):
                name = ("direct", "proxy")[(k + index) % 2]
                sample = await sides[name].stream(sessions[name], convs[name])
                firsts[name].append(sample.first)
                gaps[name].extend(sample.gaps)
                last_gaps[name].append(sample.gaps[-1])

    await asyncio.gather(*(worker(i) for i in range(args.stream_workers)))
    out: dict[str, Any] = {"scenario": "streaming", "route": route, "mode": mode}
    for key, data in (("first", firsts), ("gap", gaps), ("last_gap", last_gaps)):
        direct, proxy = summary(data["direct"]), summary(data["proxy"])
        out[key] = {"direct_ms": direct, "proxy_ms": proxy, "added_ms": added(direct, proxy)}
    out["ok_first"] = out["first"]["added_ms"]["p50"] <= TARGET_FIRST_CHUNK_MS
    out["ok_gap"] = out["gap"]["added_ms"]["p99"] <= TARGET_GAP_P99_MS
    return out


# -- output ---------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def print_report(data: dict[str, Any]) -> None:
    m, c = data["machine"], data["config"]
    print()
    print(f"machine: nproc={m['nproc']}  python={m['python']}  {m['platform']}")
    budget = c["budget"] if c["budget"] is not None else "server default (8000)"
    print(
        f"conversations of {c['turns']} turns ({c['words']}-word user messages), fresh context "
        f"each; proxied contexts' budget {budget}; store {c['store']}"
    )
    print(
        "resend = client resends its whole history; newest = only its newest message "
        "(direct calls send the whole conversation either way)"
    )
    load = data["load_average"]
    print(f"load average (1 min) at start {load['start']:.2f}, at end {load['end']:.2f}", end="")
    print("  <- other work on this machine skews the figures" if load["start"] > 0.5 else "")
    rows = data["results"]
    seq = [r for r in rows if r["scenario"] == "sequential"]
    if seq:
        print()
        print(f"1. non-streaming, one connection, sequential ({c['requests']} calls each way)")
        head = (
            f"{'route':12} {'mode':7} {'direct p50':>10} {'p99':>6} {'passthru p50':>12} "
            f"{'p99':>6} {'proxy p50':>9} {'p99':>6} {'added p50':>9} {'p99':>6}  "
            f"target (p50 <= {TARGET_ADDED_P50_MS:g} ms)"
        )
        print(head + "\n" + "-" * len(head))
        for r in seq:
            d, t, p, a = r["direct_ms"], r["passthru_ms"], r["proxy_ms"], r["added_ms"]
            print(
                f"{r['route']:12} {r['mode']:7} {d['p50']:10.2f} {d['p99']:6.2f} "
                f"{t['p50']:12.2f} {t['p99']:6.2f} {p['p50']:9.2f} {p['p99']:6.2f} "
                f"{a['p50']:+9.2f} {a['p99']:+6.2f}  {_verdict(r['ok'])}"
            )
        print(
            "(passthru: through the proxy without a context, nothing read or stored: "
            "the extra HTTP hop alone;\n added: proxy - direct)"
        )
    conc = [r for r in rows if r["scenario"] == "concurrent"]
    if conc:
        print()
        print(
            f"2. non-streaming, {c['concurrency']} concurrent connections "
            f"({c['concurrent_requests']} calls each way)"
        )
        head = (
            f"{'route':12} {'mode':7} {'direct rps':>10} {'p50':>6} {'p99':>6} "
            f"{'passthru rps':>12} {'p50':>6} {'p99':>6} {'proxy rps':>9} {'p50':>6} {'p99':>6} "
            f"{'added p50':>9} {'p99':>6}"
        )
        print(head + "\n" + "-" * len(head))
        for r in conc:
            d, t, p, a = r["direct_ms"], r["passthru_ms"], r["proxy_ms"], r["added_ms"]
            print(
                f"{r['route']:12} {r['mode']:7} {r['direct_rps']:10.0f} {d['p50']:6.1f} "
                f"{d['p99']:6.1f} {r['passthru_rps']:12.0f} {t['p50']:6.1f} {t['p99']:6.1f} "
                f"{r['proxy_rps']:9.0f} {p['p50']:6.1f} {p['p99']:6.1f} {a['p50']:+9.1f} "
                f"{a['p99']:+6.1f}"
            )
    streams = [r for r in rows if r["scenario"] == "streaming"]
    if streams:
        print()
        print(
            f"3. streaming, {c['chunks']} chunks {c['delay'] * 1000:g} ms apart "
            f"({c['stream_requests']} streams each way, {c['stream_workers']} clients)"
        )
        head = (
            f"{'route':12} {'mode':7} {'measure':9} {'direct p50':>10} {'p99':>7} {'max':>7} "
            f"{'proxy p50':>10} {'p99':>7} {'max':>7} {'added p50':>10} {'p99':>7} {'max':>7}"
            "  target"
        )
        print(head + "\n" + "-" * len(head))
        for r in streams:
            for key, label, verdict in (
                ("first", "1st chunk", f"p50 <= {TARGET_FIRST_CHUNK_MS:g} ms: "),
                ("gap", "gap", f"p99 <= {TARGET_GAP_P99_MS:g} ms: "),
                ("last_gap", "last gap", ""),
            ):
                d, p, a = r[key]["direct_ms"], r[key]["proxy_ms"], r[key]["added_ms"]
                if key == "first":
                    verdict += _verdict(r["ok_first"])
                elif key == "gap":
                    verdict += _verdict(r["ok_gap"])
                print(
                    f"{r['route']:12} {r['mode']:7} {label:9} {d['p50']:10.2f} {d['p99']:7.2f} "
                    f"{d['max']:7.2f} {p['p50']:10.2f} {p['p99']:7.2f} {p['max']:7.2f} "
                    f"{a['p50']:+10.2f} {a['p99']:+7.2f} {a['max']:+7.2f}  {verdict}"
                )
        print("('1st chunk': request sent -> first SSE event; 'gap': between consecutive events;")
        print(" 'last gap': before the final event, which the proxy holds back until the turn")
        print(" is stored. Added = proxy percentile - direct percentile.)")
    print("(milliseconds)")


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy_overhead", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a short run (~30 s)")
    parser.add_argument("--scenarios", default="1,2,3", help="which of 1,2,3 to run")
    parser.add_argument("--modes", default=",".join(MODES), help="resend and/or newest")
    parser.add_argument("--routes", default=",".join(ROUTES), help="scenario 1 routes")
    parser.add_argument("--requests", type=int, help="scenario 1 calls each way (500)")
    parser.add_argument("--warmup", type=int, help="scenario 1 untimed calls each way (50)")
    parser.add_argument("--round", type=int, default=25, help="scenario 1 calls before switching")
    parser.add_argument("--concurrency", type=int, default=64, help="scenario 2 connections")
    parser.add_argument("--concurrent-requests", type=int, help="scenario 2 calls each way (2000)")
    parser.add_argument("--stream-requests", type=int, help="scenario 3 streams each way (48)")
    parser.add_argument("--stream-workers", type=int, default=6, help="scenario 3 clients")
    parser.add_argument("--chunks", type=int, default=64, help="deltas per streamed reply")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds before each delta")
    parser.add_argument("--turns", type=int, default=16, help="turns per conversation")
    parser.add_argument("--words", type=int, default=60, help="words per user message")
    parser.add_argument(
        "--budget",
        type=int,
        default=2000,
        help="token budget of proxied contexts (0: server default 8000); 2000 makes the "
        "later turns of each conversation compact",
    )
    parser.add_argument("--store", default=None, help="store URL (default: SQLite in a temp dir)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, short in (
        ("requests", 500, 150),
        ("warmup", 50, 20),
        ("concurrent_requests", 2000, 640),
        ("stream_requests", 48, 8),
    ):
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    args.budget = args.budget or None
    args.scenarios = sorted({int(s) for s in args.scenarios.split(",") if s.strip()})
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    if (
        set(args.scenarios) - {1, 2, 3}
        or set(args.modes) - set(MODES)
        or set(args.routes) - set(ROUTES)
        or min(args.requests, args.round, args.concurrency, args.stream_requests) < 1
        or min(args.stream_workers, args.chunks, args.turns, args.words) < 1
    ):
        parser.error("bad scenarios, modes, routes or counts (see --help)")
    return args


async def run(args: argparse.Namespace, servers: Servers) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    steps: list[tuple[int, str, str]] = []
    for mode in args.modes:
        if 1 in args.scenarios:
            steps.extend((1, route, mode) for route in args.routes)
        if 2 in args.scenarios:
            steps.append((2, "openai_chat", mode))
        if 3 in args.scenarios:
            steps.append((3, "openai_chat", mode))
    scenarios = {1: sequential, 2: concurrent, 3: streaming}
    for number, route, mode in steps:
        start = time.perf_counter()
        print(f"  scenario {number} {route} {mode} ...", end=" ", flush=True)
        results.append(await scenarios[number](servers, route, mode, args))
        print(f"{time.perf_counter() - start:.1f} s", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fastpaca-bench-proxy-") as tmp:
        servers = start_servers(args, Path(tmp))
        print(f"fake upstream {servers.fake_url}, fastpaca {servers.proxy_url} ({servers.pids})")
        try:
            results = asyncio.run(run(args, servers))
        finally:
            stop_servers(servers.procs)
    data = {
        "benchmark": "proxy_overhead",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "config": {
            k: getattr(args, k)
            for k in (
                "scenarios",
                "modes",
                "routes",
                "requests",
                "warmup",
                "round",
                "concurrency",
                "concurrent_requests",
                "stream_requests",
                "stream_workers",
                "chunks",
                "delay",
                "turns",
                "words",
                "budget",
            )
        }
        | {"store": args.store or "sqlite (temp file)"},
        "targets": {
            "sequential_added_p50_ms": TARGET_ADDED_P50_MS,
            "first_chunk_added_p50_ms": TARGET_FIRST_CHUNK_MS,
            "gap_added_p99_ms": TARGET_GAP_P99_MS,
        },
        "results": results,
    }
    print_report(data)
    missing = sum(r.get("missing_headers", 0) for r in results)
    if missing:
        print(f"WARNING: {missing} proxied responses without X-Fastpaca-Version")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {args.out} ({data['seconds']} s)")
    oks = [r[k] for r in results for k in ("ok", "ok_first", "ok_gap") if k in r]
    if missing:
        return 1  # the proxy did not store what it was given: a failure, not a figure
    return 1 if args.strict and not all(oks) else 0


if __name__ == "__main__":
    sys.exit(main())
