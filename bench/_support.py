"""Shared by the HTTP benchmarks: statistics, the machine, servers as subprocesses, results.

The server under test always runs as its own process (``fastpaca serve``, or
the fake upstream), started here and stopped with SIGTERM; the load comes from
yet another process (``wrk`` or :mod:`bench.loadgen`).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = os.environ.get("FASTPACA_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


# -- statistics -------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(samples_ms: Sequence[float]) -> dict[str, float]:
    ms = sorted(samples_ms)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms),
        "max": ms[-1],
    }


# -- targets ------------------------------------------------------------------------


@dataclass
class Check:
    """One target: ``value`` compared with ``limit`` (``at_least`` or at most)."""

    name: str
    value: float | None
    limit: float
    unit: str
    at_least: bool = False
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.value is None or self.value != self.value:  # missing or NaN
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "unit": self.unit,
            "at_least": self.at_least,
            "passed": self.passed,
            "note": self.note,
        }


def verdict(passed: bool | None) -> str:
    return {True: "pass", False: "MISS", None: "n/a"}[passed]


def print_checks(checks: Sequence[dict[str, Any]]) -> None:
    if not checks:
        return
    width = max(len(c["name"]) for c in checks)
    print(f"\n{'target':{width}}  {'measured':>14}  {'limit':>14}  verdict")
    print("-" * (width + 42))
    for c in checks:
        sign = ">=" if c["at_least"] else "<="
        value = "-" if c["value"] is None else f"{c['value']:,.1f} {c['unit']}"
        limit = f"{sign} {c['limit']:,.0f} {c['unit']}"
        note = f"  ({c['note']})" if c.get("note") else ""
        print(f"{c['name']:{width}}  {value:>14}  {limit:>14}  {verdict(c['passed'])}{note}")


# -- the machine ----------------------------------------------------------------------


def _meminfo_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


async def _pg_version(url: str) -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(url, timeout=3)
    except Exception:  # any failure: unknown
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def machine(pg_url: str = DEFAULT_PG_URL) -> dict[str, Any]:
    mem = _meminfo_mb()
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_mb": None if mem is None else round(mem),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": asyncio.run(_pg_version(pg_url.split("?", 1)[0])),
        "load_average_at_start": list(os.getloadavg()),
    }


def describe_machine(m: dict[str, Any]) -> str:
    mem = f"{m['memory_mb'] / 1024:.1f} GiB" if m.get("memory_mb") else "?"
    return (
        f"nproc={m['nproc']}  {m['cpu']}  memory={mem}  python={m['python']}  "
        f"postgres={m.get('postgres') or 'n/a'}  load={m['load_average_at_start'][0]:.2f}"
    )


# -- results ---------------------------------------------------------------------------


def write_results(name: str, data: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def envelope(name: str, config: dict[str, Any], pg_url: str = DEFAULT_PG_URL) -> dict[str, Any]:
    return {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(pg_url),
        "config": config,
    }


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    """The environment for servers: ours, without FASTPACA_* settings that would leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPACA_")}
    paths = [str(ROOT), str(ROOT / "proxy"), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


def rss_mb(pid: int) -> float:
    """Resident set size of one process, in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (from /proc), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class Server:
    """A process serving HTTP on ``port``: started, checked ready, stopped with SIGTERM."""

    argv: list[str]
    log: Path
    port: int = field(default_factory=free_port)
    ready_path: str = "/health/ready"
    proc: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None

    @classmethod
    def fastpaca(cls, store: str, log: Path, *extra: str) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "fastpaca_core.cli", "serve", "--store", store]
        argv += ["--port", str(port), "--log-level", "WARNING", *extra]
        return cls(argv, log, port)

    @classmethod
    def fake_upstream(cls, log: Path) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "fastpaca_proxy.fake_upstream", "--port", str(port)]
        return cls(argv, log, port, ready_path="/v1/models")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Server:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=log, env=child_env(), cwd=self.log.parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(
                    f"{self.argv[2]} exited with {self.proc.returncode}: " + " | ".join(tail)
                )
            try:
                if httpx.get(self.base + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s; see {self.log}")

    def pids(self) -> list[int]:
        """The server and its workers (``--workers N``)."""
        return [self.pid, *children(self.pid)]

    def rss_mb(self) -> float:
        return sum(rss_mb(pid) for pid in self.pids())

    def cpu_seconds(self) -> float:
        """CPU time the server (and its workers) used so far: less noisy than wall time."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        return self.exit_code

    def __enter__(self) -> Server:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- the API, from the orchestrating process ------------------------------------------


def put_contexts(base: str, ids: Sequence[str], config: dict[str, Any] | None = None) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for cid in ids:
            client.put(f"/v1/contexts/{cid}", json=config or {}).raise_for_status()


def last_seqs(base: str, ids: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for cid in ids:
            resp = client.get(f"/v1/contexts/{cid}")
            resp.raise_for_status()
            out[cid] = int(resp.json()["last_seq"])
    return out


# -- Postgres schemas -------------------------------------------------------------------------


def pg_schema_url(base: str, tag: str) -> str:
    schema = f"bench_{tag}_{os.getpid()}_{secrets.token_hex(3)}"
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}schema={schema}"


def pg_reachable(base: str) -> str | None:
    """None when Postgres answers, else why not."""

    async def probe() -> str | None:
        try:
            import asyncpg

            conn = await asyncpg.connect(base.split("?", 1)[0], timeout=3)
        except Exception as exc:  # reported to the user
            return f"PostgreSQL at {base} is unreachable: {exc}"
        await conn.close()
        return None

    return asyncio.run(probe())


def drop_pg_schema(url: str) -> None:
    """Drop the schema named by ``?schema=`` in ``url``, and everything in it."""
    dsn, _, query = url.partition("?")
    schema = dict(part.partition("=")[::2] for part in query.split("&")).get("schema")
    if not schema or not schema.replace("_", "").isalnum():
        raise ValueError(f"no schema to drop in {url}")

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


# -- the load generator process -----------------------------------------------------------------


def run_loadgen(spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """Run :mod:`bench.loadgen` as its own process with ``spec``; its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        env=child_env(),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
