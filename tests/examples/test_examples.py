"""Every program in examples/ runs as written against a live stack.

The stack is Fastpaca with its proxy, its upstream the fake LLM; each example
runs as its own process, as a user would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxy.support import Stack, run_stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    store = tmp_path_factory.mktemp("examples") / "examples.db"
    with run_stack(f"sqlite:///{store}") as running:
        yield running


def run(stack: Stack, name: str, stdin: str = "") -> str:
    env = {**os.environ, "FASTPACA_URL": stack.base, "OPENAI_MODEL": "gpt-test"}
    env["ANTHROPIC_MODEL"] = "claude-test"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_openai_chat_loop(stack: Stack) -> None:
    out = run(stack, "openai_chat_loop.py", "hello\nhow are you?\n")
    assert "assistant: echo: hello" in out
    assert "assistant: echo: how are you?" in out
    assert stack.texts("chat-openai") == [
        ("user", "hello"),
        ("assistant", "echo: hello"),
        ("user", "how are you?"),
        ("assistant", "echo: how are you?"),
    ]


def test_anthropic_chat_loop(stack: Stack) -> None:
    out = run(stack, "anthropic_chat_loop.py", "first\nsecond\n")
    assert out.count("assistant: echo:") == 2
    assert [role for role, _ in stack.texts("chat-anthropic")] == ["user", "assistant"] * 2
    # the second call carried the first turn from the log
    sent = stack.fake.last.json["messages"]
    assert len(sent) == 3


def test_rest_client(stack: Stack) -> None:
    out = run(stack, "rest_client.py")
    assert "log: 17 messages" in out
    assert "newest: ['Plan day 8 of my trip to Lisbon, briefly.', 'Day 8: walk, eat, rest.']" in out
    window = stack.window("rest-demo")
    assert window["used_tokens"] <= 120
    assert window["messages"][0]["role"] == "system"


def test_manual_compaction(stack: Stack) -> None:
    out = run(stack, "manual_compaction.py")
    assert "compacted seqs up to" in out
    assert "log length: 12" in out
    window = stack.window("manual-demo")
    assert window["segments"][0]["type"] == "summary"
    assert window["segments"][-1]["to_seq"] == 12
