"""Fixtures of the proxy tests: the whole stack, and SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Stack, run_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with run_stack(f"sqlite:///{tmp_path / 'proxy.db'}") as running:
        yield running
