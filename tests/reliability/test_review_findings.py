"""Review findings on tenancy, limits and outages: each test failed before its fix.

Real parts over real sockets: the API with its proxy on a loopback port, the
fake upstream as the provider, SQLite on disk.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
from live_api import Start

from fastpaca_core.jsonutil import loads
from fastpaca_core.settings import Settings

ACME_KEY = "key-acme"


# -- limits -------------------------------------------------------------------------


async def test_stream_cap_holds_under_concurrent_upgrades(start: Start) -> None:
    """``max_streams`` is a cap, not a hint: upgrades racing each other cannot pass it.

    The check and the count were apart by the store read of the context, so
    every upgrade that arrived meanwhile saw the process as not full.
    """
    server = await start(max_streams=2)
    async with server.session.put(server.base + "/v1/contexts/s", json={}) as resp:
        assert resp.status == 200
    url = server.base + "/v1/contexts/s/stream"

    async def connect() -> aiohttp.ClientWebSocketResponse | int:
        try:
            return await server.session.ws_connect(url)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status

    outcomes = await asyncio.gather(*(connect() for _ in range(30)))
    opened = [o for o in outcomes if isinstance(o, aiohttp.ClientWebSocketResponse)]
    refused = [o for o in outcomes if not isinstance(o, aiohttp.ClientWebSocketResponse)]
    try:
        assert len(opened) == 2, f"{len(opened)} streams opened past a cap of 2"
        assert refused == [503] * 28
    finally:
        for ws in opened:
            await ws.close()


# -- keys -----------------------------------------------------------------------------


async def test_a_tenant_key_in_x_api_key_never_reaches_the_upstream(start: Start) -> None:
    """Without a server-held provider key the client's ``x-api-key`` is
    forwarded, unless it is one of our keys: those stay with Fastpaca, as in
    ``Authorization``."""
    server = await start(api_keys=f"acme:{ACME_KEY}")
    body = {
        "model": "claude-test",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"X-Fastpaca-Key": ACME_KEY, "x-api-key": ACME_KEY, "anthropic-version": "2023-06-01"}
    async with server.session.post(
        server.base + "/v1/contexts/chat/anthropic/v1/messages", json=body, headers=headers
    ) as resp:
        await resp.read()
    assert server.fake.requests, "the call did not reach the upstream"
    assert ACME_KEY not in str(server.fake.last.headers)


def test_settings_never_show_a_key() -> None:
    """A settings object printed in a log line or a traceback shows no key."""
    settings = Settings(
        api_key="secret-default",
        api_keys="acme:secret-acme",
        metrics_key="secret-metrics",
        openai_api_key="secret-openai",
        anthropic_api_key="secret-anthropic",
    )
    assert "secret" not in repr(settings)


# -- outages ------------------------------------------------------------------------


def test_a_store_down_at_startup_is_one_log_line_and_exit_1(tmp_path: Path) -> None:
    """``fastpaca serve`` with its store unreachable exits 1 with one error line
    naming the cause, not a traceback."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPACA_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastpaca_core.cli",
            "serve",
            "--port",
            "0",
            "--store",
            f"postgresql://nobody@127.0.0.1:{port}/db",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    errors = [loads(line) for line in output.splitlines() if '"level":"error"' in line]
    assert [e["error"] for e in errors] == ["store_unavailable"], output


async def test_sqlite_locked_by_another_process_answers_503_then_recovers(
    start: Start, tmp_path: Path
) -> None:
    """Another process holding SQLite's write lock: writes answer 503
    ``store_unavailable`` once the busy timeout passes, reads go on, and writes
    work again once the lock is released."""
    path = tmp_path / "locked.db"
    server = await start(store=f"sqlite:///{path}")
    message = {"message": {"role": "user", "parts": [{"type": "text", "text": "hi"}]}}
    async with server.session.put(server.base + "/v1/contexts/c", json={}) as resp:
        assert resp.status == 200
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sqlite3, sys\n"
        f"conn = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "print('held', flush=True)\n"
        "sys.stdin.readline()\n",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert await holder.stdout.readline() == b"held\n"
        async with server.session.post(
            server.base + "/v1/contexts/c/messages", json=message
        ) as resp:
            assert resp.status == 503, await resp.text()
            body = await resp.json()
            assert set(body) == {"error", "message"} and body["error"] == "store_unavailable"
        async with server.session.get(server.base + "/v1/contexts/c") as resp:
            assert resp.status == 200  # WAL: readers are not blocked
    finally:
        holder.stdin.write(b"\n")
        await holder.wait()
    async with server.session.post(server.base + "/v1/contexts/c/messages", json=message) as resp:
        assert resp.status == 201, await resp.text()


# -- tenants --------------------------------------------------------------------------


async def test_hand_made_list_cursors_never_page_into_another_tenant(start: Start) -> None:
    """A cursor is only a position: one that names another tenant's internal id
    is refused, and any other lists the caller's own contexts only."""
    server = await start(api_key="key-default", api_keys=f"acme:{ACME_KEY},globex:key-globex")
    for key, cid in (("key-globex", "g1"), (ACME_KEY, "a1"), ("key-default", "d1")):
        async with server.session.put(
            f"{server.base}/v1/contexts/{cid}", json={}, headers={"X-Fastpaca-Key": key}
        ) as resp:
            assert resp.status == 200

    def cursor(raw: str) -> str:
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    future = "2999-01-01T00:00:00.000000Z"
    for key, raw, expected in (
        (ACME_KEY, f"{future}|globex/g1", None),  # another tenant's internal id: 400
        ("key-default", f"{future}|acme/a1", None),
        (ACME_KEY, f"{future}|zzz", ["a1"]),
        ("key-default", f"{future}|zzz", ["d1"]),
    ):
        async with server.session.get(
            f"{server.base}/v1/contexts",
            params={"cursor": cursor(raw)},
            headers={"X-Fastpaca-Key": key},
        ) as resp:
            body = await resp.json()
            if expected is None:
                assert resp.status == 400 and body["error"] == "invalid_request", body
            else:
                assert resp.status == 200, body
                assert [c["id"] for c in body["contexts"]] == expected
