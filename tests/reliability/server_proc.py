"""``fastpaca serve`` in a subprocess that a test may SIGKILL and restart.

:class:`ServerProc` runs one API process on a fixed free port (a restart keeps
the port, so clients need not know it died). :class:`RetryingAppender` is a
client that appends messages with unique idempotency keys and retries any
request whose outcome is unknown (connection error, timeout, 5xx, 429) with the
same key, until it is acknowledged. :func:`read_log` pages the whole log back
over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from private_pg import free_port, pg_bin

__all__ = [
    "Ack",
    "acked",
    "RetryingAppender",
    "ServerProc",
    "check_exactly_once",
    "figures",
    "read_log",
    "require_private_postgres",
    "wait_progress",
]

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_private_postgres() -> None:
    """Skip (fail under ``CI=true``) when a private cluster cannot be run here."""
    try:
        pg_bin("initdb")
        pg_bin("pg_ctl")
    except FileNotFoundError as exc:
        if IN_CI:
            pytest.fail(f"{exc} (CI=true: the crash tests must run)")
        pytest.skip(str(exc))


class ServerProc:
    """One ``fastpaca serve`` process; ``start``, ``kill`` (SIGKILL), ``stop`` (SIGTERM)."""

    def __init__(self, store: str, workdir: Path, name: str = "api") -> None:
        self.store = store
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0

    async def start(self, timeout: float = 60.0) -> None:
        """Spawn the process and wait until ``/health/ready`` answers 200."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPACA_")}
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fastpaca_core.cli",
                "serve",
                "--store",
                self.store,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--log-level",
                "WARNING",
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.starts += 1
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        probe = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=probe) as session:
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise AssertionError(
                        f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}"
                    )
                try:
                    async with session.get(self.base + "/health/ready") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if loop.time() > deadline:
                    raise AssertionError(f"{self.name} never became ready: {self.log_tail()}")
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, in-flight requests cut off."""
        assert self.proc is not None and self.proc.returncode is None, "not running"
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def restart(self, timeout: float = 60.0) -> None:
        await self.kill()
        await self.start(timeout)

    async def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 30 s); the exit code, None if never started."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"


@dataclass(frozen=True)
class Ack:
    """One acknowledged append: who sent it, its marker, and what the server said."""

    marker: str
    seq: int
    version: int
    replayed: bool


@dataclass
class RetryingAppender:
    """Appends ``{name}-{n}`` for n = 0, 1, ... until ``stop`` is set.

    Each message carries its marker in the text and in ``metadata.marker`` and is
    sent with ``Idempotency-Key: {marker}``. A request whose outcome is unknown
    is retried with the same key and body, on the next of ``bases`` (so a retry
    may reach another API process), until acknowledged. Once ``stop`` is set the
    appender finishes the append in flight and returns: every append it
    started is acknowledged.
    """

    name: str
    context_id: str
    bases: list[str]
    session: aiohttp.ClientSession
    stop: asyncio.Event
    rng: random.Random
    pause: float = 0.0  # think time between appends: up to this many seconds
    acks: list[Ack] = field(default_factory=list)
    retries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    _turn: int = 0

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            self.acks.append(await self.append_until_acked(f"{self.name}-{n}"))
            n += 1
            if self.pause:
                await asyncio.sleep(self.rng.uniform(0, self.pause))

    async def append_until_acked(self, marker: str) -> Ack:
        body = {
            "message": {
                "role": "user",
                "parts": [{"type": "text", "text": f"message {marker}"}],
                "metadata": {"marker": marker},
            }
        }
        headers = {"Idempotency-Key": marker}
        attempt = 0
        while True:
            base = self.bases[self._turn % len(self.bases)]
            url = f"{base}/v1/contexts/{self.context_id}/messages"
            try:
                async with self.session.post(url, json=body, headers=headers) as resp:
                    status = resp.status
                    text = await resp.text()
                    replayed = resp.headers.get("Idempotent-Replayed") == "true"
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.outcomes[type(exc).__name__] += 1
            else:
                self.outcomes[str(status)] += 1
                if status == 201:
                    data = json.loads(text)
                    return Ack(marker, data["seq"], data["version"], replayed)
                if status < 500 and status != 429:
                    raise AssertionError(f"{marker}: unexpected {status} {text}")
                if status >= 500:
                    self.server_errors.append(f"{status} {text[:300]}")
            # unknown outcome: retry the same key, next time on the next process
            attempt += 1
            self.retries += 1
            self._turn += 1
            await asyncio.sleep(min(0.5, 0.01 * 2 ** min(attempt, 6)) * self.rng.uniform(0.5, 1))


async def read_log(
    session: aiohttp.ClientSession, base: str, context_id: str
) -> list[dict[str, Any]]:
    """Every stored message of ``context_id``, by forward paging on seq."""
    rows: list[dict[str, Any]] = []
    while True:
        url = f"{base}/v1/contexts/{context_id}/messages?after_seq={len(rows) and rows[-1]['seq']}"
        async with session.get(url + "&limit=1000") as resp:
            assert resp.status == 200, await resp.text()
            page = (await resp.json())["messages"]
        if not page:
            return rows
        rows.extend(page)


def check_exactly_once(appenders: list[RetryingAppender], rows: list[dict[str, Any]]) -> None:
    """Every acknowledged append is stored exactly once, at the seq it was acked with;
    seqs are gapless 1..N and N is the number of distinct appends."""
    acks = [ack for appender in appenders for ack in appender.acks]
    markers = [ack.marker for ack in acks]
    assert len(set(markers)) == len(markers), "an append was acknowledged twice"
    seqs = [row["seq"] for row in rows]
    assert seqs == list(range(1, len(rows) + 1)), "seqs are not gapless from 1"
    stored = Counter(row["metadata"].get("marker") for row in rows)
    twice = sorted(m for m, n in stored.items() if n > 1)
    assert not twice, f"stored more than once: {twice[:10]}"
    lost = sorted(set(markers) - set(stored))
    assert not lost, f"acknowledged but not stored: {lost[:10]}"
    extra = sorted(str(m) for m in set(stored) - set(markers))
    assert not extra, f"stored but never acknowledged: {extra[:10]}"
    assert len(rows) == len(acks)
    at = {row["metadata"]["marker"]: row for row in rows}
    for ack in acks:
        row = at[ack.marker]
        assert row["seq"] == ack.seq, f"{ack.marker} acked as seq {ack.seq}, stored at {row['seq']}"
        assert row["parts"] == [{"type": "text", "text": f"message {ack.marker}"}]
    versions = [ack.version for ack in acks]
    assert len(set(versions)) == len(versions), "a version was acknowledged twice"
    for appender in appenders:  # each client's markers are its own 0..k-1, in order
        own = [ack.marker for ack in appender.acks]
        assert own == [f"{appender.name}-{n}" for n in range(len(own))]


def figures(appenders: list[RetryingAppender]) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    for appender in appenders:
        outcomes.update(appender.outcomes)
    return {
        "appends": sum(len(a.acks) for a in appenders),
        "retries": sum(a.retries for a in appenders),
        "replayed": sum(ack.replayed for a in appenders for ack in a.acks),
        "outcomes": dict(sorted(outcomes.items())),
    }


def acked(appenders: list[RetryingAppender]) -> int:
    return sum(len(a.acks) for a in appenders)


async def wait_progress(
    appenders: list[RetryingAppender],
    since: int,
    servers: list[ServerProc],
    timeout: float = 60,
) -> None:
    """Wait until more than ``since`` appends are acknowledged (the service serves)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while acked(appenders) <= since:
        if loop.time() > deadline:
            stats = figures(appenders)
            tails = "\n".join(f"--- {s.name}:\n{s.log_tail(1500)}" for s in servers)
            raise AssertionError(f"no append acknowledged for {timeout} s: {stats}\n{tails}")
        await asyncio.sleep(0.01)
