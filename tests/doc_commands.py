"""Running the shell blocks of a page (README, docs) against a real server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_against_server(blocks: list[str], db: Path) -> list[Any]:
    """Start ``fastpaca serve`` on a free port with an SQLite file ``db``, run
    ``blocks`` (sh, pointed at ``127.0.0.1:4000``) there, and return every
    non-empty line they printed, parsed as JSON."""
    port = free_port()
    script = "set -euo pipefail\n" + "\n".join(blocks)
    script = script.replace("127.0.0.1:4000", f"127.0.0.1:{port}")
    fastpaca = Path(sys.executable).parent / "fastpaca"
    server = subprocess.Popen(
        [str(fastpaca), "serve", "--port", str(port), "--store", f"sqlite:///{db}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        out = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    finally:
        server.terminate()
        server.wait(timeout=15)
    return [json.loads(line) for line in out.splitlines() if line.strip()]
