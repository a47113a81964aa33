"""Two API processes on one PostgreSQL: SIGKILL either at random moments, and crash
PostgreSQL itself once, under load. No acknowledged append is lost or doubled.

The cluster is a private one (:mod:`private_pg`): the machine's shared server is
never stopped. Eight clients spread over both processes append with unique
idempotency keys; a request whose outcome is unknown (connection error, 5xx) is
retried with the same key, on the other process, until acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import aiohttp
import pytest
from private_pg import PrivatePostgres
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
OUTAGE_AFTER = 5  # kills before PostgreSQL is crashed
CONTEXT = "crash"


@pytest.mark.postgres
@pytest.mark.slow
async def test_api_and_postgres_crashes_lose_and_double_nothing(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    seed = int(os.environ.get("FASTPACA_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nseed {seed} (set FASTPACA_CRASH_SEED to replay the kill moments)")
    rng = random.Random(seed)
    store = private_pg.url + "?schema=fp_crash"
    servers = [ServerProc(store, tmp_path, f"api{i}") for i in range(2)]
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    appenders: list[RetryingAppender] = []
    outage = 0.0
    restarting: dict[ServerProc, asyncio.Task[None]] = {}
    try:
        for server in servers:  # one after the other: the first migrates the schema
            await server.start()
        bases = [server.base for server in servers]
        async with aiohttp.ClientSession(timeout=timeout) as session:
            policy = {"strategy": "last_n", "config": {"limit": 40}}
            config = {"token_budget": 400, "policy": policy}
            async with session.put(f"{bases[0]}/v1/contexts/{CONTEXT}", json=config) as resp:
                assert resp.status == 200, await resp.text()
            stop = asyncio.Event()
            appenders = [
                RetryingAppender(
                    f"c{i}",
                    CONTEXT,
                    bases[i % 2 :] + bases[: i % 2],  # half start on each process
                    session,
                    stop,
                    random.Random(rng.random()),
                    pause=0.02,
                )
                for i in range(CLIENTS)
            ]
            tasks = [asyncio.create_task(a.run()) for a in appenders]
            try:
                for kill in range(KILLS):
                    await wait_progress(appenders, acked(appenders), servers)
                    await asyncio.sleep(rng.uniform(0.05, 1.0))
                    if all(s in restarting for s in servers):
                        await asyncio.wait(restarting.values(), return_when=asyncio.FIRST_COMPLETED)
                    for server, task in list(restarting.items()):
                        if task.done():
                            await restarting.pop(server)  # raises if it did not start
                    victim = rng.choice([s for s in servers if s not in restarting])
                    await victim.kill()  # and restart it while the chaos goes on
                    restarting[victim] = asyncio.create_task(victim.start())
                    if kill + 1 == OUTAGE_AFTER:
                        await asyncio.gather(*restarting.values())
                        restarting.clear()
                        await wait_progress(appenders, acked(appenders), servers)
                        await asyncio.sleep(rng.uniform(0.05, 0.5))
                        down = time.monotonic()
                        await asyncio.to_thread(private_pg.stop, "immediate")
                        await asyncio.sleep(rng.uniform(0.5, 2.0))
                        await asyncio.to_thread(private_pg.start)
                        await wait_progress(appenders, acked(appenders), servers)
                        outage = time.monotonic() - down
                await asyncio.gather(*restarting.values())
                await wait_progress(appenders, acked(appenders), servers)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 120)
            finally:
                for task in [*tasks, *restarting.values()]:
                    task.cancel()
                await asyncio.gather(*tasks, *restarting.values(), return_exceptions=True)

            rows = await read_log(session, bases[1], CONTEXT)
            async with session.get(f"{bases[0]}/v1/contexts/{CONTEXT}") as resp:
                ctx = await resp.json()
            async with session.get(f"{bases[0]}/v1/contexts/{CONTEXT}/context") as resp:
                window = await resp.json()
        for server in servers:
            assert await server.stop() == 0, server.log_tail()
    finally:
        for server in servers:
            if server.proc is not None and server.proc.returncode is None:
                await server.kill()

    stats = figures(appenders)
    errors = sorted({e for a in appenders for e in a.server_errors})
    print(
        f"kills {[s.kills for s in servers]}, starts {[s.starts for s in servers]}, "
        f"outage until progress {outage:.1f} s, {stats}, {time.monotonic() - started:.1f} s"
    )
    if errors:
        print("5xx bodies seen:", *errors[:10], sep="\n  ")
    assert sum(server.kills for server in servers) >= 10
    check_exactly_once(appenders, rows)
    assert ctx["last_seq"] == len(rows) == stats["appends"]
    assert ctx["version"] >= ctx["last_seq"]
    assert window["used_tokens"] <= 400
    assert window["segments"][-1]["to_seq"] == len(rows)
