"""examples/langchain_memory.py runs offline, as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_memory.py"


def test_the_example_runs(sqlite_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE), sqlite_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "in memory: the model saw 2 .. 40 messages; all lost on exit"
    assert lines[2].startswith("fastpaca: the LLM context holds ")
    assert lines[2].endswith(", the log 40")
    assert lines[-1] == "fastpaca: after clear(): context 0, log still 40"
