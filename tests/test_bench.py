"""Every benchmark scenario imports and answers ``--help``.

The benchmarks are not run here (tests never time anything); this keeps a
refactor of the shared bench code from breaking a scenario unnoticed.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.__main__ import SCENARIOS  # noqa: E402


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_imports_and_has_help(name: str) -> None:
    module = importlib.import_module(f"bench.{SCENARIOS[name][0]}")
    assert callable(module.main)
    done = subprocess.run(
        [sys.executable, "-m", "bench", name, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_host_speed_reads_the_fixed_work_of_this_run() -> None:
    from bench.__main__ import host_speed

    tokens = {"results": [{"case": "short text (~20 words)", "us_per_message": 10.44}]}
    appends = {
        "results": [
            {
                "backend": "sqlite",
                "workers": 1,
                "variant": "own",
                "clients": 16,
                "server_cpu_us_per_append": 9.0,
            },
            {
                "backend": "sqlite",
                "workers": 1,
                "variant": "own",
                "clients": 64,
                "server_cpu_us_per_append": 499.04,
            },
            {
                "backend": "postgres",
                "workers": 2,
                "variant": "own",
                "clients": 64,
                "server_cpu_us_per_append": 7.0,
            },
        ]
    }
    assert host_speed({"tokens": tokens, "appends": appends}) == {
        "counting a ~20-word message": 10.4,
        "server CPU per append (SQLite, 64 clients)": 499.0,
    }
    assert host_speed({"tokens": tokens}) == {"counting a ~20-word message": 10.4}
    assert host_speed({"appends": {"results": [{"backend": "sqlite"}]}}) == {}
