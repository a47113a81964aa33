"""Automatic failover: the PostgreSQL primary dies, Patroni promotes the replica.

``scripts/pg-failover-cluster`` runs one etcd and two Patroni nodes (primary
and synchronous replica). ``fastpaca serve`` (a subprocess, never restarted)
uses the multi-host URL with ``target_session_attrs=read-write``; clients
append with idempotency keys and retry whatever is not acknowledged. The
leader node dies (its Patroni and its postmaster SIGKILLed, as when a machine
goes away); after the leader key's ttl the replica is promoted. Asserted: the
service answered only 201 or 503 throughout (no 500, no other error), appends
resume without a restart, and every acknowledged append is stored exactly
once with gapless seqs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from server_proc import (
    RetryingAppender,
    ServerProc,
    acked,
    check_exactly_once,
    figures,
    read_log,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pg-failover-cluster"
IN_CI = os.environ.get("CI", "").lower() == "true"
CONTEXT = "failover"
CLIENTS = 4


def _require(program: str) -> None:
    if shutil.which(program) is None:
        message = f"{program} is not installed (apt-get install patroni etcd-server)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true: the failover test must run")
        pytest.skip(message)


@pytest.fixture
def cluster() -> Iterator[tuple[Path, str]]:
    """The cluster's directory and multi-host URL; always torn down."""
    _require("patroni")
    _require("etcd")
    parent = Path(tempfile.mkdtemp(prefix="fastpaca-failover-"))
    parent.chmod(0o755)  # the nodes run as the postgres user
    root = parent / "cluster"
    try:
        done = subprocess.run(
            [str(SCRIPT), "up", str(root)], capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stdout + done.stderr
        yield root, done.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(SCRIPT), "down", str(root)], capture_output=True, timeout=120)
        shutil.rmtree(parent, ignore_errors=True)


def members(root: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [str(SCRIPT), "status", str(root)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    found: list[dict[str, object]] = json.loads(done.stdout)["members"]
    return found


def kill_leader(root: Path) -> str:
    """SIGKILL the leader's Patroni, then its postmaster: the machine is gone."""
    leader = next(str(m["name"]) for m in members(root) if m["role"] == "leader")
    state = json.loads((root / "cluster.json").read_text())
    postmaster = int((root / leader / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(state["nodes"][leader]["patroni_pid"], signal.SIGKILL)
    os.kill(postmaster, signal.SIGKILL)
    return leader


async def watch_503(appenders: list[RetryingAppender], seen: list[float]) -> None:
    count = 0
    while True:
        now = sum(a.outcomes["503"] for a in appenders)
        if now != count:
            count = now
            seen.append(time.monotonic())
        await asyncio.sleep(0.01)


async def wait_acked(appenders: list[RetryingAppender], more_than: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while acked(appenders) <= more_than:
        assert loop.time() < deadline, f"no more than {more_than} appends acknowledged"
        await asyncio.sleep(0.01)


@pytest.mark.slow
async def test_failover_loses_nothing(cluster: tuple[Path, str], tmp_path: Path) -> None:
    root, url = cluster
    assert "," in url and "target_session_attrs=read-write" in url
    server = ServerProc(url, tmp_path)
    await server.start()
    appenders: list[RetryingAppender] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.put(f"{server.base}/v1/contexts/{CONTEXT}", json={}) as resp:
                assert resp.status == 200, await resp.text()
            stop = asyncio.Event()
            appenders = [
                RetryingAppender(f"c{i}", CONTEXT, [server.base], session, stop, random.Random(i))
                for i in range(CLIENTS)
            ]
            tasks = [asyncio.create_task(a.run()) for a in appenders]
            await wait_acked(appenders, 100, timeout=60)

            before = acked(appenders)
            errors_seen: list[float] = []  # when the count of 503s went up
            watcher = asyncio.create_task(watch_503(appenders, errors_seen))
            tasks.append(watcher)
            killed_at = time.monotonic()
            old = kill_leader(root)
            print(f"\nkilled leader {old} after {before} acknowledged appends")
            # Patroni promotes the replica once the leader key expires (ttl)
            while True:
                leaders = [m for m in members(root) if m["role"] == "leader"]
                if leaders and leaders[0]["name"] != old and leaders[0]["state"] == "running":
                    break
                assert time.monotonic() - killed_at < 60, f"no new leader: {members(root)}"
                await asyncio.sleep(0.2)
            promoted = time.monotonic() - killed_at
            # the service, never restarted, serves again by itself
            after = acked(appenders)
            await wait_acked(appenders, after + 100, timeout=60)
            async with session.get(f"{server.base}/health/ready") as resp:
                assert resp.status == 200

            stop.set()
            await asyncio.gather(*tasks[:CLIENTS])
            rows = await read_log(session, server.base, CONTEXT)
            check_exactly_once(appenders, rows)
            stats = figures(appenders)
            assert errors_seen, "no 503 seen: did the failover happen?"
            first, last = errors_seen[0] - killed_at, errors_seen[-1] - killed_at
            print(
                f"promoted {promoted:.1f} s after the kill; 503s from {first:.2f} s "
                f"to {last:.2f} s after it; {stats}"
            )
            unexpected = set(stats["outcomes"]) - {"201", "503"}
            assert not unexpected, stats
            assert all(e.startswith("503") for a in appenders for e in a.server_errors)
            assert stats["outcomes"].get("503", 0) > 0, "the failover went unnoticed?"
        assert server.starts == 1 and server.proc is not None and server.proc.returncode is None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        code = await server.stop()
        print(f"server log tail:\n{server.log_tail(1500)}" if code not in (0, None) else "")
