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
