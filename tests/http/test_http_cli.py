"""``fastpaca serve``: settings from env and flags, --help, and a graceful SIGTERM."""

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
from http_support import raw_exchange

from fastpaca_core.cli import build_parser, new_event_loop
from fastpaca_core.errors import ValidationError
from fastpaca_core.jsonutil import loads
from fastpaca_core.settings import Settings


def test_defaults_work_without_configuration() -> None:
    settings = Settings.load({})
    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 4000)
    assert settings.store == "sqlite:///fastpaca.db"
    assert settings.api_key is None
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.max_page_size == 1000
    assert (settings.ws_ping_interval, settings.ws_idle_timeout) == (30.0, 90.0)


def test_env_then_flags() -> None:
    env = {
        "FASTPACA_PORT": "5000",
        "FASTPACA_API_KEY": "k",
        "FASTPACA_WS_PING_INTERVAL": "0.5",
        "FASTPACA_LOG_LEVEL": "debug",
        "FASTPACA_STORE": "",
    }
    settings = Settings.load(env, {"port": 6000, "host": None})
    assert settings.port == 6000 and settings.host == "127.0.0.1"
    assert settings.api_key == "k" and settings.ws_ping_interval == 0.5
    assert settings.log_level_number == 10
    assert settings.store == "sqlite:///fastpaca.db"
    assert Settings.load({"FASTPACA_API_KEY": ""}).api_key is None


@pytest.mark.parametrize(
    "env",
    [
        {"FASTPACA_PORT": "http"},
        {"FASTPACA_PORT": "70000"},
        {"FASTPACA_MAX_BODY_BYTES": "0"},
        {"FASTPACA_WS_IDLE_TIMEOUT": "-1"},
        {"FASTPACA_LOG_LEVEL": "chatty"},
        {"FASTPACA_EVENT_LOOP": "trio"},
    ],
)
def test_bad_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings.load(env)


def test_serve_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in Settings.fields():
        assert "--" + field.name.replace("_", "-") in text
        assert field.metadata["env"] in text
    assert "default: 127.0.0.1" in text and "default: 4000" in text
    assert "default: sqlite:///fastpaca.db" in text and "default: none" in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(("choice", "runs_on"), [("auto", "uvloop"), ("asyncio", "asyncio")])
async def test_serve_stops_gracefully_on_sigterm(tmp_path: Path, choice: str, runs_on: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "FASTPACA_PORT": str(port),
        "FASTPACA_LOG_LEVEL": "INFO",
        "FASTPACA_EVENT_LOOP": choice,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fastpaca_core.cli",
        "serve",
        "--store",
        f"sqlite:///{tmp_path / 'served.db'}",
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(base + "/health/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            async with session.put(base + "/v1/contexts/cli") as resp:
                assert resp.status == 200
            # what aiohttp cannot parse is answered in the JSON error shape here too
            status, headers, body = await raw_exchange(port, b"HELLO THERE\r\n\r\n")
            assert status == 400 and headers["content-type"].startswith("application/json")
            assert loads(body)["error"] == "invalid_request"
            ws = await session.ws_connect(base + "/v1/contexts/cli/stream")
            assert (await ws.receive_json(timeout=5))["type"] == "context"
            proc.send_signal(signal.SIGTERM)
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1001
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    log = (await proc.stderr.read()).decode()
    assert '"msg":"request"' in log and '"route":"/v1/contexts/{id}"' in log
    assert '"msg":"stopped"' in log
    assert f'"event_loop":"{runs_on}"' in log  # uvloop is a dependency on this platform
    assert (tmp_path / "served.db").exists()


@pytest.mark.parametrize(
    ("choice", "store", "runs_on"),
    [
        ("auto", "sqlite:///x.db", "uvloop"),
        ("auto", "memory://", "uvloop"),
        ("auto", "postgresql://h/db", "asyncio"),  # uvloop measured a longer tail there
        ("uvloop", "postgresql://h/db", "uvloop"),
        ("asyncio", "sqlite:///x.db", "asyncio"),
    ],
)
def test_the_event_loop_follows_the_setting_and_the_store(
    choice: str, store: str, runs_on: str
) -> None:
    loop, name = new_event_loop(choice, Settings(store=store).on_postgres)
    try:
        assert name == runs_on
        assert ("uvloop" in type(loop).__module__) == (runs_on == "uvloop")
    finally:
        loop.close()


@pytest.mark.parametrize("taken", ["port", "host"])
def test_serve_that_cannot_listen_says_so_in_one_line(tmp_path: Path, taken: str) -> None:
    """A port in use or a host that does not resolve: one ``cannot start``
    line and exit code 1, as for a store that cannot be opened; no traceback."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        host = "127.0.0.1" if taken == "port" else "no-such-host.invalid"
        done = subprocess.run(
            [sys.executable, "-m", "fastpaca_core.cli", "serve", "--host", host]
            + ["--port", str(port), "--store", f"sqlite:///{tmp_path / 'x.db'}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = [loads(x) for x in done.stderr.splitlines() if '"cannot start"' in x]
    assert line["level"] == "error" and line["reason"].startswith(f"{taken}: cannot listen")
