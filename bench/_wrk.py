"""``wrk`` as the load generator: found, or installed from Debian's packages when root.

One wrk thread per client, each with exactly one connection, so "client i
appends to its own context" holds: the Lua ``setup`` gives thread i its path.
``done`` prints the counts and the latency percentiles as one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

_SCRIPT = r"""
local paths = {%(paths)s}
local index = 0
function setup(thread)
  index = index + 1
  thread:set("path", paths[((index - 1) %% #paths) + 1])
end
function init(args)
  wrk.method = "%(method)s"
  wrk.path = path
  %(body)s
end
function done(summary, latency, requests)
  io.write(string.format(
    '\n@@{"requests":%%d,"duration_us":%%d,"status_errors":%%d,"connect_errors":%%d,'
    .. '"read_errors":%%d,"write_errors":%%d,"timeouts":%%d,'
    .. '"p50_us":%%d,"p95_us":%%d,"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def ensure_wrk(install: bool = True) -> tuple[str | None, str]:
    """The path to ``wrk`` and how it was found; installs it with apt-get as root."""
    found = shutil.which("wrk")
    if found:
        return found, "found"
    if not install:
        return None, "wrk not installed"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, "wrk not installed (apt-get install wrk needs root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"]):
        subprocess.run(attempt, env=env, capture_output=True, check=False)
        found = shutil.which("wrk")
        if found:
            return found, "installed with apt-get"
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True)
    found = shutil.which("wrk")
    return (found, "installed with apt-get") if found else (None, "apt-get install wrk failed")


def run_wrk(
    wrk: str,
    base: str,
    paths: Sequence[str],
    clients: int,
    seconds: float,
    *,
    method: str = "POST",
    body: str | None = None,
) -> dict[str, Any]:
    """``clients`` threads x 1 connection for ``seconds``; throughput and latency (ms)."""
    lua = _SCRIPT % {
        "paths": ", ".join(_lua_string(p) for p in paths),
        "method": method,
        "body": (
            f'wrk.body = {_lua_string(body)}\n  wrk.headers["Content-Type"] = "application/json"'
            if body is not None
            else ""
        ),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        done = subprocess.run(
            [
                wrk,
                "-t",
                str(clients),
                "-c",
                str(clients),
                "-d",
                f"{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                script.name,
                base,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 60,
        )
    finally:
        os.unlink(script.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("@@")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    raw: dict[str, Any] = json.loads(line[2:])
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in raw if k.endswith("errors") or k == "timeouts")
    return {
        "ok": raw["requests"] - raw["status_errors"],
        "errors": errors,
        "seconds": seconds_run,
        "rps": (raw["requests"] - raw["status_errors"]) / seconds_run,
        "latency_ms": {
            "p50": raw["p50_us"] / 1000,
            "p95": raw["p95_us"] / 1000,
            "p99": raw["p99_us"] / 1000,
            "mean": raw["mean_us"] / 1000,
            "max": raw["max_us"] / 1000,
        },
        "raw": raw,
    }
