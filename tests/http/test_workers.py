"""``fastpaca serve --workers N``: processes sharing one port over one PostgreSQL store."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from fastpaca_core.cli import main
from fastpaca_core.errors import ValidationError
from fastpaca_core.settings import Settings

APPENDS = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped has stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@pytest.mark.parametrize("store", ["sqlite:///fastpaca.db", "memory://"])
def test_more_workers_need_postgres(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Settings(store=store, workers=2)
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Settings.load({"FASTPACA_WORKERS": "0", "FASTPACA_STORE": store})
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--store", store, "--workers", "2"])
    assert exited.value.code == 2
    assert "more than one worker needs a PostgreSQL store" in capsys.readouterr().err


def test_worker_count_is_checked() -> None:
    assert Settings().workers == 1
    env = {"FASTPACA_WORKERS": "3", "FASTPACA_STORE": "postgresql://h/db"}
    assert Settings.load(env).workers == 3
    with pytest.raises(ValidationError, match="workers"):
        Settings(store="postgresql://h/db", workers=-1)


async def start_workers(
    pg_url: str, tmp_path: Path, port: int
) -> tuple[asyncio.subprocess.Process, Path]:
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fastpaca_core.cli",
            "serve",
            "--workers",
            "2",
            "--store",
            pg_url,
            "--port",
            str(port),
            "--log-level",
            "INFO",
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("FASTPACA_")},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    return proc, log_path


def listening(log_path: Path) -> set[int]:
    """Workers that logged aiohttp's "Running on" line: they accept connections."""
    found: set[int] = set()
    for line in log_path.read_text().splitlines():
        if "Running on" in line:
            found |= {w for w in (0, 1) if f'"worker":{w}' in line}
    return found


async def wait_ready(session: aiohttp.ClientSession, base: str, log_path: Path) -> None:
    for _ in range(400):
        if listening(log_path) == {0, 1}:
            try:
                async with session.get(base + "/health/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
        await asyncio.sleep(0.05)
    raise AssertionError("the workers did not become ready: " + log_path.read_text()[-2000:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_two_workers_share_the_port_and_order(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    proc, log_path = await start_workers(pg_url, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        connector = aiohttp.TCPConnector(limit=48)
        async with aiohttp.ClientSession(connector=connector) as session:
            await wait_ready(session, base, log_path)
            assert len(children(proc.pid)) == 2
            async with session.put(base + "/v1/contexts/shared") as resp:
                assert resp.status == 200

            async def append(n: int) -> int:
                body = {"message": {"role": "user", "parts": [{"type": "text", "text": f"m{n}"}]}}
                async with session.post(base + "/v1/contexts/shared/messages", json=body) as resp:
                    assert resp.status == 201, await resp.text()
                    seq: int = (await resp.json())["seq"]
                    return seq

            seqs = await asyncio.gather(*(append(n) for n in range(APPENDS)))
            assert sorted(seqs) == list(range(1, APPENDS + 1))
            url = base + f"/v1/contexts/shared/messages?limit={APPENDS + 10}"
            async with session.get(url) as resp:
                stored = (await resp.json())["messages"]
            assert [m["seq"] for m in stored] == list(range(1, APPENDS + 1))
            texts = sorted(m["parts"][0]["text"] for m in stored)
            assert texts == sorted(f"m{n}" for n in range(APPENDS))
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log_text = log_path.read_text()
    # both workers answered appends (48 connections spread by SO_REUSEPORT)
    for worker in (0, 1):
        assert any(
            f'"worker":{worker}' in line and '"route":"/v1/contexts/{id}/messages"' in line
            for line in log_text.splitlines()
        ), f"worker {worker} served no append"
    assert log_text.count('"msg":"stopped"') == 3  # two workers and the parent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_workers_stop_when_the_parent_is_killed(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    proc, log_path = await start_workers(pg_url, tmp_path, port)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, f"http://127.0.0.1:{port}", log_path)
        workers = children(proc.pid)
        assert len(workers) == 2
        proc.kill()  # SIGKILL: no chance to forward anything
        await proc.wait()
        for _ in range(200):
            if not any(running(pid) for pid in workers):
                break
            await asyncio.sleep(0.05)
        alive = [pid for pid in workers if running(pid)]
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        assert not alive, "orphaned workers kept running"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert log_path.read_text().count('"msg":"stopped"') == 2  # each worker shut down cleanly
