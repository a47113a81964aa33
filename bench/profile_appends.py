"""Where an append's time goes: py-spy on ``fastpaca serve`` under 64 concurrent clients.

Starts the server (SQLite, and Postgres with ``--workers 2``), drives it with
the append load of :mod:`bench.http_appends` (wrk, or the Python generator),
and meanwhile samples it with ``py-spy record --gil`` (only the thread holding
the GIL, i.e. the Python work that bounds a process's throughput), in
non-blocking mode. Prints how busy the GIL was, the time by component (each
sample goes to the innermost frame that belongs to a known component), and
the functions with most self time; writes the collapsed stacks (for
flamegraph.pl or speedscope) next to the JSON.

    .venv/bin/python -m bench profile                     # both backends, 10 s each
    .venv/bin/python -m bench profile --backends sqlite --no-gil   # every thread, GIL or not

Needs ``py-spy`` (``.venv/bin/pip install py-spy``; not a project dependency)
and ptrace permission (root, or ``kernel.yama.ptrace_scope=0``). Sampling costs
the server some throughput; compare rates with the plain ``appends`` run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _support as s
from .http_appends import Loader

# (component, path fragments); a sample goes to the innermost frame that matches
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("token counting (tiktoken)", ("tiktoken/", "fastpaca_core/tokens.py")),
    ("JSON (orjson)", ("fastpaca_core/jsonutil.py", "/json/")),
    ("logging / access log", ("/logging/", "fastpaca_core/http/logs.py")),
    ("metrics (prometheus_client)", ("prometheus_client/", "fastpaca_core/http/metrics.py")),
    ("SQLite calls (sqlite3)", ("fastpaca_core/stores/sqlite.py", "/sqlite3/")),
    ("asyncpg", ("asyncpg/", "fastpaca_core/stores/postgres.py")),
    ("store row codec", ("fastpaca_core/stores/_codec.py",)),
    (
        "engine, model, policies",
        (
            "fastpaca_core/engine.py",
            "fastpaca_core/appends.py",
            "fastpaca_core/summaries.py",
            "fastpaca_core/compaction.py",
            "fastpaca_core/model.py",
            "fastpaca_core/policies/",
            "fastpaca_core/window.py",
            "fastpaca_core/events.py",
            "fastpaca_core/toolcalls.py",
        ),
    ),
    ("HTTP handlers, middleware", ("fastpaca_core/http/", "fastpaca_proxy/")),
    ("aiohttp (parse, route, respond)", ("aiohttp/", "multidict/", "yarl/")),
    ("asyncio event loop, sockets", ("asyncio/", "selectors.py", "uvloop/")),
    ("threads / executors", ("concurrent/futures/", "threading.py")),
]


def component(frame: str) -> str | None:
    for name, fragments in COMPONENTS:
        if any(f in frame for f in fragments):
            return name
    return None


@dataclass
class Profile:
    by_component: Counter[str] = field(default_factory=Counter)
    by_leaf: Counter[str] = field(default_factory=Counter)  # self time
    ours: Counter[str] = field(default_factory=Counter)  # inclusive, fastpaca code only
    by_process: Counter[int] = field(default_factory=Counter)
    total: int = 0


def parse_collapsed(text: str) -> Profile:
    """Samples by component, by leaf function, by our functions (inclusive), by process."""
    prof = Profile()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        pid = 0
        while frames and frames[0].startswith("process "):  # parent; child (--subprocesses)
            pid_text = frames[0].split()[1].partition(":")[0]
            pid = int(pid_text) if pid_text.isdigit() else 0
            frames = frames[1:]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        prof.total += count
        prof.by_process[pid] += count
        prof.by_leaf[frames[-1]] += count
        name = next((c for c in map(component, reversed(frames)) if c is not None), "other")
        prof.by_component[name] += count
        for frame in {_function(f) for f in frames if "fastpaca_" in f and "cli.py" not in f}:
            prof.ours[frame] += count
    return prof


def _function(frame: str) -> str:
    """``name (path:line)`` -> ``name (path)``: one entry per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile_backend(
    backend: str, store: str, workers: int, args: argparse.Namespace, tmp: Path, spy: str
) -> dict[str, Any]:
    loader = Loader(args.loadgen)
    raw_path = s.RESULTS / f"profile_{backend}.collapsed.txt"
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    server = s.Server.fastpaca(store, tmp / f"profile-{backend}.log", "--workers", str(workers))
    with server:
        ids = [f"prof-{i}" for i in range(args.clients)]
        paths = [f"/v1/contexts/{cid}/messages" for cid in ids]
        s.put_contexts(server.base, ids)
        loader.run(server.base, paths, args.clients, 2)  # warm-up
        command = [spy, "record", "--pid", str(server.pid), "--rate", str(args.rate)]
        command += ["--duration", str(args.seconds), "--format", "raw", "--nonblocking"]
        command += ["-o", str(raw_path)]
        if workers > 1:
            command.append("--subprocesses")
        if args.gil:
            command.append("--gil")
        spy_proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        result = loader.run(server.base, paths, args.clients, args.seconds + 1)
        _, spy_err = spy_proc.communicate(timeout=60)
    if spy_proc.returncode != 0 or not raw_path.exists():
        raise RuntimeError(f"py-spy failed: {spy_err.decode()[-1500:]}")
    prof = parse_collapsed(raw_path.read_text())
    possible = args.rate * args.seconds * max(1, workers)
    return {
        "backend": backend,
        "workers": workers,
        "appends_per_s_while_sampled": result["rps"],
        "latency_ms": result["latency_ms"],
        "samples": prof.total,
        "busy_share": prof.total / possible,
        "by_component": dict(prof.by_component.most_common()),
        "top_self": prof.by_leaf.most_common(args.top),
        "top_inclusive_ours": prof.ours.most_common(args.top),
        "by_process": {str(k): v for k, v in prof.by_process.items()},
        "collapsed_stacks": str(raw_path),
    }


def print_profile(p: dict[str, Any], gil: bool) -> None:
    what = "GIL held" if gil else "threads on CPU"
    print(
        f"\n== {p['backend']} (workers {p['workers']}): {p['appends_per_s_while_sampled']:,.0f} "
        f"appends/s while sampled; {what} {p['busy_share']:.0%} of the time "
        f"({p['samples']:,} samples)"
    )
    total = max(1, p["samples"])
    for name, count in p["by_component"].items():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("  top self time:")
    for frame, count in p["top_self"]:
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print("  our functions, inclusive:")
    for frame, count in p["top_inclusive_ours"]:
        print(f"  {100 * count / total:5.1f}%  {frame}")
    print(f"  stacks: {p['collapsed_stacks']}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 s per backend")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seconds", type=int, help="sampled seconds (10; quick 5)")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--pg-workers", type=int, default=2)
    parser.add_argument("--gil", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--pg-url", default=s.DEFAULT_PG_URL)
    parser.add_argument("--out", type=Path, default=s.RESULTS / "profile_appends.json")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (5 if args.quick else 10)
    args.backends = [b for b in args.backends.split(",") if b]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    spy = find_py_spy()
    if spy is None:
        print("profile: py-spy not found; install it: .venv/bin/pip install py-spy")
        return 1
    profiles: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fastpaca-bench-profile-") as tmp_name:
        tmp = Path(tmp_name)
        for backend in args.backends:
            print(f"profiling {backend} under {args.clients} clients ...", flush=True)
            if backend == "sqlite":
                store, workers, url = f"sqlite:///{tmp / 'profile.db'}", 1, None
            else:
                problem = s.pg_reachable(args.pg_url)
                if problem:
                    skipped[backend] = problem
                    continue
                url = s.pg_schema_url(args.pg_url, "profile")
                store, workers = url, args.pg_workers
            try:
                profiles.append(profile_backend(backend, store, workers, args, tmp, spy))
            except RuntimeError as exc:
                skipped[backend] = str(exc)
                print(f"  failed: {exc}")
            finally:
                if url is not None:
                    s.drop_pg_schema(url)
    for p in profiles:
        print_profile(p, args.gil)
    data = s.envelope(
        "profile_appends",
        {
            "seconds": args.seconds,
            "rate": args.rate,
            "clients": args.clients,
            "gil_only": args.gil,
            "pid": os.getpid(),
        },
        args.pg_url,
    )
    data |= {"profiles": profiles, "skipped": skipped, "checks": []}
    print(f"\nwrote {s.write_results('profile_appends', data, args.out)}")
    return 0 if profiles else 1


if __name__ == "__main__":
    raise SystemExit(main())
