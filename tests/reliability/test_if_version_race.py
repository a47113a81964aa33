"""Sixteen clients race on ``if_version`` through two API processes on one PostgreSQL.

Optimistic concurrency holds across processes: a version is acknowledged once,
each 2xx is exactly ``if_version + 1``, the number of 2xx answers is the final
``last_seq`` (and ``version``: the ``manual`` policy never compacts), and every
other answer is a 409 conflict naming the version expected and the one found.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from server_proc import ServerProc, read_log

CLIENTS = 16
LOCKSTEP_ROUNDS = 15  # every client reads, then all append with the same if_version
FREE_ATTEMPTS = 15  # then each client reads and appends as fast as it can
CONTEXT = "race"
CONFLICT = re.compile(r"^Context version changed \(expected (\d+), found (\d+)\)$")


@dataclass(frozen=True)
class Attempt:
    marker: str
    if_version: int
    status: int
    body: dict[str, Any]


async def attempt(session: aiohttp.ClientSession, base: str, marker: str) -> Attempt:
    async with session.get(f"{base}/v1/contexts/{CONTEXT}") as resp:
        assert resp.status == 200, await resp.text()
        version: int = (await resp.json())["version"]
    return await append(session, base, marker, version)


async def append(session: aiohttp.ClientSession, base: str, marker: str, version: int) -> Attempt:
    message = {
        "role": "user",
        "parts": [{"type": "text", "text": marker}],
        "metadata": {"marker": marker},
    }
    body = {"message": message, "if_version": version}
    async with session.post(f"{base}/v1/contexts/{CONTEXT}/messages", json=body) as resp:
        return Attempt(marker, version, resp.status, await resp.json())


@pytest.mark.postgres
@pytest.mark.slow
async def test_if_version_race_across_two_processes(pg_url: str, tmp_path: Path) -> None:
    servers = [ServerProc(pg_url, tmp_path, f"api{i}") for i in range(2)]
    attempts: list[Attempt] = []
    try:
        for server in servers:  # one after the other: the first migrates the schema
            await server.start()
        bases = [server.base for server in servers]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            put = {"policy": {"strategy": "manual"}}
            async with session.put(f"{bases[0]}/v1/contexts/{CONTEXT}", json=put) as resp:
                assert resp.status == 200, await resp.text()

            barrier = asyncio.Barrier(CLIENTS)

            async def lockstep(client: int) -> list[Attempt]:
                base, done = bases[client % 2], []
                for n in range(LOCKSTEP_ROUNDS):
                    async with session.get(f"{base}/v1/contexts/{CONTEXT}") as resp:
                        version = (await resp.json())["version"]
                    await barrier.wait()  # every read is done before any append
                    done.append(await append(session, base, f"L{client}-{n}", version))
                    await barrier.wait()  # every append is done before the next read
                return done

            async def free(client: int) -> list[Attempt]:
                base = bases[client % 2]
                markers = [f"F{client}-{n}" for n in range(FREE_ATTEMPTS)]
                return [await attempt(session, base, marker) for marker in markers]

            rounds = await asyncio.gather(*(lockstep(c) for c in range(CLIENTS)))
            attempts = [a for done in rounds for a in done]
            for n in range(LOCKSTEP_ROUNDS):  # exactly one winner per round
                round_n = [done[n] for done in rounds]
                assert len({a.if_version for a in round_n}) == 1
                assert sum(a.status == 201 for a in round_n) == 1, round_n
            for done in await asyncio.gather(*(free(c) for c in range(CLIENTS))):
                attempts.extend(done)

            async with session.get(f"{bases[1]}/v1/contexts/{CONTEXT}") as resp:
                ctx = await resp.json()
            rows = await read_log(session, bases[0], CONTEXT)
        for server in servers:
            assert await server.stop() == 0, server.log_tail()
    finally:
        for server in servers:
            if server.proc is not None and server.proc.returncode is None:
                await server.kill()

    oks = [a for a in attempts if a.status == 201]
    others = [a for a in attempts if a.status != 201]
    free_oks = sum(a.marker.startswith("F") for a in oks)
    print(f"\n{len(attempts)} attempts, {len(oks)} acknowledged ({free_oks} free-running)")
    assert ctx["last_seq"] == ctx["version"] == len(oks)
    versions = [a.body["version"] for a in oks]
    assert len(set(versions)) == len(versions), "a version was acknowledged twice"
    assert sorted(versions) == list(range(1, len(oks) + 1))
    for a in oks:
        assert a.body["version"] == a.body["seq"] == a.if_version + 1, a
    for a in others:
        assert a.status == 409, a
        assert a.body["error"] == "conflict", a
        found = CONFLICT.match(a.body["message"])
        assert found is not None, a
        assert int(found[1]) == a.if_version < int(found[2]), a
    assert [row["seq"] for row in rows] == list(range(1, len(oks) + 1))
    by_seq = {a.body["seq"]: a.marker for a in oks}
    assert [row["metadata"]["marker"] for row in rows] == [by_seq[row["seq"]] for row in rows]
