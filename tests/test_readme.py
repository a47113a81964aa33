"""The README's set-up commands and its curl walkthrough match the code."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from doc_commands import run_against_server

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def test_readme_starts_with_the_two_setup_commands() -> None:
    install, test = sh_blocks(README)[:2]
    assert install.strip().endswith("fastpaca serve")
    assert "pip install -e ." in install
    assert test.strip() == "./scripts/test"
    assert os.access(ROOT / "scripts" / "test", os.X_OK)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test" in ci


def test_curl_walkthrough_works_as_written(tmp_path: Path) -> None:
    section = README[README.index("## A compacting") : README.index("## What is in the box")]
    bodies = run_against_server(sh_blocks(section), tmp_path / "r.db")
    assert "error" not in json.dumps(bodies)
    created, *appends = bodies[:8]
    assert created["token_budget"] == 60
    assert [a["seq"] for a in appends] == list(range(1, 8))
    window = bodies[8]
    assert window["messages"][0]["role"] == "system"
    assert window["segments"][0] == {"type": "live", "from_seq": 1, "to_seq": 1}
    assert window["used_tokens"] <= 60
    assert len(window["messages"]) < 7  # compacted
    tail = bodies[9]
    assert [m["seq"] for m in tail["messages"]] == [5, 6, 7]
    final = bodies[11]
    assert final["format"] == "openai"
    assert final["segments"][0] == {"type": "summary", "from_seq": 1, "to_seq": 5}
    assert final["messages"][0] == {"role": "system", "content": "You are terse."}
    assert final["messages"][1]["content"].startswith("Summary")
