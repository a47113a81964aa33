"""docs/quickstart.md runs as written, and the responses it shows are the real ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

from doc_commands import run_against_server

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "quickstart.md").read_text()
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", PAGE, re.S)


def test_quickstart_starts_with_the_readme_setup_command() -> None:
    readme_install = re.findall(r"```sh\n(.*?)```", README, re.S)[0]
    assert blocks("sh")[0] == readme_install


def test_quickstart_runs_and_shows_real_responses(tmp_path: Path) -> None:
    got = run_against_server(blocks("sh")[1:], tmp_path / "q.db")
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


def test_the_front_page_walkthrough_shows_what_it_says(tmp_path: Path) -> None:
    """docs/index.md's short version: the window it describes, and the full log."""
    index = (ROOT / "docs" / "index.md").read_text()
    section = index[index.index("## Quickstart") : index.index("## Key terms")]
    walkthrough = re.findall(r"```sh\n(.*?)```", section, re.S)[2]
    tail = "curl -s -w '\\n' 'http://127.0.0.1:4000/v1/contexts/lisbon/tail?limit=100'\n"
    created, *appends, window, log = run_against_server([walkthrough + tail], tmp_path / "i.db")
    assert created["id"] == "lisbon"
    assert [a["seq"] for a in appends] == list(range(1, 9))
    assert [m["seq"] for m in window["messages"]] == [6, 7, 8]
    assert window["used_tokens"] == 39 and window["needs_compaction"] is False
    assert window["segments"] == [{"type": "live", "from_seq": 6, "to_seq": 8}]
    assert [m["seq"] for m in log["messages"]] == list(range(1, 9))
