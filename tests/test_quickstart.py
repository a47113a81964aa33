"""docs/quickstart.md runs as written, and the responses it shows are the real ones."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "quickstart.md").read_text()
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", PAGE, re.S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_quickstart_starts_with_the_readme_setup_command() -> None:
    readme_install = re.findall(r"```sh\n(.*?)```", README, re.S)[0]
    assert blocks("sh")[0] == readme_install


def test_quickstart_runs_and_shows_real_responses(tmp_path: Path) -> None:
    port = free_port()
    script = "set -euo pipefail\n" + "\n".join(blocks("sh")[1:])
    script = script.replace("127.0.0.1:4000", f"127.0.0.1:{port}")
    fastpaca = Path(sys.executable).parent / "fastpaca"
    server = subprocess.Popen(
        [str(fastpaca), "serve", "--port", str(port), "--store", f"sqlite:///{tmp_path}/q.db"],
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
    got = [json.loads(line) for line in out.splitlines() if line.strip()]
    shown = [parse(block) for block in blocks("json")]
    created, system, *rest = got
    assert created["token_budget"] == 100 and created["policy"] == shown[0]["policy"]
    assert system == shown[1]
    assert rest[:4] == shown[2]  # the four appends
    window = rest[4]
    for key in ("version", "used_tokens", "needs_compaction", "segments"):
        assert window[key] == shown[3][key], key
    assert rest[5:7] == shown[4]  # days 3: the version jumps
    assert without_time(rest[7]) == without_time(shown[5])  # the compacted window
    assert [m["seq"] for m in rest[8]["messages"]] == list(range(1, 8))  # the full log
    assert rest[9] == shown[7]  # {"version": 9}
    assert rest[10] == shown[8]  # the window in OpenAI's format


def parse(block: str) -> object:
    """A JSON block: one document, or one per line."""
    try:
        return json.loads(block)
    except json.JSONDecodeError:
        return [json.loads(line) for line in block.splitlines()]


def without_time(value: object) -> object:
    text = json.dumps(value, separators=(",", ":"))
    return json.loads(re.sub(r',"inserted_at":"[^"]*"', "", text))
