"""SIGKILL the server at random moments under load: no acknowledged append is lost
or doubled (SQLite file store).

Eight clients append with unique idempotency keys and retry every request whose
outcome is unknown with the same key until it is acknowledged; the server is
killed (SIGKILL) and restarted at least ten times meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
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
    wait_progress,
)

CLIENTS = 8
KILLS = 10
CONTEXT = "crash"


@pytest.mark.slow
async def test_sigkill_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("FASTPACA_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nseed {seed} (set FASTPACA_CRASH_SEED to replay the kill moments)")
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    server = ServerProc(f"sqlite:///{db}", tmp_path)
    started = time.monotonic()
    await server.start()
    timeout = aiohttp.ClientTimeout(total=20)
    appenders: list[RetryingAppender] = []
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # a small budget: the last_n policy compacts while the server is killed
            policy = {"strategy": "last_n", "config": {"limit": 40}}
            config = {"token_budget": 400, "policy": policy}
            async with session.put(f"{server.base}/v1/contexts/{CONTEXT}", json=config) as resp:
                assert resp.status == 200, await resp.text()
            stop = asyncio.Event()
            appenders = [
                RetryingAppender(
                    f"c{i}",
                    CONTEXT,
                    [server.base],
                    session,
                    stop,
                    random.Random(rng.random()),
                    pause=0.02,
                )
                for i in range(CLIENTS)
            ]
            tasks = [asyncio.create_task(a.run()) for a in appenders]
            try:
                for _ in range(KILLS):
                    await wait_progress(appenders, acked(appenders), [server])
                    await asyncio.sleep(rng.uniform(0.05, 1.0))
                    await server.restart()
                await wait_progress(appenders, acked(appenders), [server])
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 120)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            rows = await read_log(session, server.base, CONTEXT)
            async with session.get(f"{server.base}/v1/contexts/{CONTEXT}") as resp:
                ctx = await resp.json()
            async with session.get(f"{server.base}/v1/contexts/{CONTEXT}/context") as resp:
                window = await resp.json()
        assert await server.stop() == 0
    finally:
        if server.proc is not None and server.proc.returncode is None:
            await server.kill()

    stats = figures(appenders)
    print(
        f"kills {server.kills}, starts {server.starts}, {stats}, {time.monotonic() - started:.1f} s"
    )
    assert server.kills >= 10
    check_exactly_once(appenders, rows)
    assert ctx["last_seq"] == len(rows) == stats["appends"]
    assert ctx["version"] >= ctx["last_seq"]
    assert window["used_tokens"] <= 400
    assert window["segments"][-1]["to_seq"] == len(rows)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
