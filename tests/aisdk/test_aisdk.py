"""ai-sdk (Node) through the proxy: generateText and streamText over several turns.

``turns.mjs`` plays an ai-sdk app: four turns, each passing the accumulated
``messages`` back, with a ``weather`` tool whose ``execute`` runs in a
multi-step call (``stopWhen: stepCountIs(3)``). It runs once per provider:
``openai(model)`` (Responses), ``openai.chat(model)`` (Chat Completions) and
``anthropic(model)``, each against its own context; Responses twice, with
ai-sdk's default ``store: true`` (earlier replies go back as ``item_reference``
items, which the proxy resolves against the log) and with ``store: false``.
The test then checks what reached the fake upstream, what the log holds, and
what ai-sdk returned. Versions: ai 6.0.324, @ai-sdk/openai 3.0.141,
@ai-sdk/anthropic 3.0.139 (ai 7 needs node >= 22).

The npm packages (pinned by ``package.json`` + ``package-lock.json``) are
installed with ``npm ci`` into ``$XDG_CACHE_HOME/fastpaca/aisdk-<hash>``
(default ``~/.cache``), keyed by the hash of those two files and reused while
they do not change. Without node or npm the test is skipped, and fails under
``CI=true``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from proxy.support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack, run_stack

from fastpaca_proxy.fake_upstream import Reply, ToolCall
from fastpaca_proxy.fake_upstream.recording import RecordedRequest

HERE = Path(__file__).parent
SCRIPT = HERE / "turns.mjs"
PINNED = ("package.json", "package-lock.json")
IN_CI = os.environ.get("CI", "").lower() == "true"
NODE_MAJOR_MIN = 18  # ai 6 / @ai-sdk/* 3 declare engines node >= 18

SYSTEM = "You are a terse weather bot."  # turns.mjs sends it as the system prompt


@dataclass(frozen=True)
class Run:
    provider: str  # turns.mjs: responses | chat | anthropic
    protocol: str  # what the fake upstream sees
    provider_options: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return ANTHROPIC_MODEL if self.provider == "anthropic" else OPENAI_MODEL


RUNS = {
    "chat": Run("chat", "openai_chat"),
    "anthropic": Run("anthropic", "anthropic"),
    # ai-sdk's default for the Responses API (store: true) sends earlier
    # assistant messages back as {"type": "item_reference", "id": "msg_..."}
    "responses": Run("responses", "openai_responses"),
    # with store: false it sends them back whole
    "responses-nostore": Run("responses", "openai_responses", {"openai": {"store": False}}),
}


def param(name: str) -> Any:
    return pytest.param(name, id=name)


# --- the Node side: tools, install, run ----------------------------------------------------


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        problem = f"{name} is not installed"
        if IN_CI:
            pytest.fail(f"{problem} (CI=true: the ai-sdk test must run)")
        pytest.skip(problem)
    return path


def node_binary() -> str:
    node = require_tool("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < NODE_MAJOR_MIN:
        problem = f"node {version.stdout.strip()} is older than {NODE_MAJOR_MIN}"
        if IN_CI:
            pytest.fail(f"{problem} (CI=true: the ai-sdk test must run)")
        pytest.skip(problem)
    return node


def install_dir() -> Path:
    """Where the pinned packages live: one directory per package.json + lock."""
    digest = hashlib.sha256()
    for name in PINNED:
        digest.update((HERE / name).read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "fastpaca" / f"aisdk-{digest.hexdigest()[:16]}"


def install_packages(npm: str) -> Path:
    """``npm ci`` into the cache once; complete installs are renamed into place."""
    target = install_dir()
    if (target / ".installed").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)
    try:
        for name in PINNED:
            shutil.copy2(HERE / name, staging / name)
        env = {
            **os.environ,
            "npm_config_audit": "false",
            "npm_config_fund": "false",
            "npm_config_update_notifier": "false",
        }
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        (staging / ".installed").write_text("npm ci done\n")
        if target.exists() and not (target / ".installed").exists():
            shutil.rmtree(target, ignore_errors=True)  # a broken leftover
        try:
            staging.rename(target)
        except OSError:
            if not (target / ".installed").exists():  # not a concurrent install that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_node(node: str, modules: Path, workdir: Path, runs: list[dict[str, Any]]) -> Any:
    """Run turns.mjs next to the cached node_modules; its stdout is one JSON document."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / SCRIPT.name
    shutil.copy2(SCRIPT, script)
    link = workdir / "node_modules"
    if not link.exists():
        link.symlink_to(modules / "node_modules", target_is_directory=True)
    done = subprocess.run(
        [node, str(script)],
        cwd=workdir,
        env={**os.environ, "AISDK_RUNS": json.dumps(runs)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"node failed ({done.returncode}):\n{done.stderr[-4000:]}"
    try:
        return json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"node printed no JSON:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


# --- the conversation ----------------------------------------------------------------------


def script_replies(stack: Stack, name: str, protocol: str) -> None:
    """Six upstream calls: two per tool turn (call, then answer), one per plain turn."""
    stack.fake.script(
        Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"}, id=f"call_{name}_1")]),
        "Oslo is cold: -3 C.",
        Reply(tool_calls=[ToolCall("weather", {"city": "Bergen"}, id=f"call_{name}_2")]),
        "Bergen is wet: 7 C.",
        "Bergen.",
        "Bye.",
        protocol=protocol,  # type: ignore[arg-type]
    )


def expected(name: str) -> list[tuple[Any, ...]]:
    """The whole conversation, provider-neutral (see :func:`upstream_transcript`)."""
    return [
        ("user", "What is the weather in Oslo?"),
        ("call", f"call_{name}_1", "weather", {"city": "Oslo"}),
        ("result", f"call_{name}_1", "weather", {"city": "Oslo", "celsius": -3}),
        ("assistant", "Oslo is cold: -3 C."),
        ("user", "And in Bergen?"),
        ("call", f"call_{name}_2", "weather", {"city": "Bergen"}),
        ("result", f"call_{name}_2", "weather", {"city": "Bergen", "celsius": 7}),
        ("assistant", "Bergen is wet: 7 C."),
        ("user", "Which one is warmer?"),
        ("assistant", "Bergen."),
        ("user", "Thanks, bye."),
        ("assistant", "Bye."),
    ]


# how much of expected() each of the six upstream calls must carry, and whether it streams
PROMPT_LENGTHS = [1, 3, 5, 7, 9, 11]
STREAMED = [False, False, True, True, True, False]  # turns: generate, stream, stream, generate


@dataclass
class Conversation:
    name: str
    run: Run
    output: dict[str, Any]
    requests: list[RecordedRequest]
    log: list[dict[str, Any]]
    window: dict[str, Any]


@pytest.fixture(scope="module")
def conversations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Conversation]]:
    node = node_binary()
    modules = install_packages(require_tool("npm"))
    tmp = tmp_path_factory.mktemp("aisdk")
    with run_stack(f"sqlite:///{tmp / 'aisdk.db'}") as stack:
        done: dict[str, Conversation] = {}
        for name, run in RUNS.items():
            context = f"aisdk-{name}"
            if run.provider == "anthropic":
                base_url = f"{stack.anthropic_url(context)}/v1"
            else:
                base_url = stack.openai_url(context)
            stack.fake.clear()
            script_replies(stack, name, run.protocol)
            spec = {
                "name": name,
                "provider": run.provider,
                "baseURL": base_url,
                "model": run.model,
                "providerOptions": run.provider_options,
            }
            output = run_node(node, modules, tmp / "node", [spec])[name]
            done[name] = Conversation(
                name, run, output, stack.fake.requests, stack.log(context), stack.window(context)
            )
        yield done


# --- reading what reached the upstream -----------------------------------------------------


def _text(content: Any, kinds: tuple[str, ...]) -> str:
    if isinstance(content, str):
        return content
    return "".join(b["text"] for b in content if b.get("type") in kinds)


def _output(value: Any) -> Any:
    """A tool result as sent: ai-sdk serialises the execute() result as JSON text."""
    if isinstance(value, list):
        value = "".join(b.get("text", "") for b in value)
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def chat_transcript(body: dict[str, Any]) -> tuple[list[Any], list[tuple[Any, ...]]]:
    preamble: list[Any] = []
    out: list[tuple[Any, ...]] = []
    names: dict[str, str] = {}
    for m in body["messages"]:
        if m["role"] in ("system", "developer"):
            preamble.append(_text(m["content"], ("text",)))
        elif m["role"] == "user":
            out.append(("user", _text(m["content"], ("text",))))
        elif m["role"] == "assistant":
            for call in m.get("tool_calls") or []:
                fn = call["function"]
                names[call["id"]] = fn["name"]
                out.append(("call", call["id"], fn["name"], json.loads(fn["arguments"])))
            if m.get("content"):
                out.append(("assistant", _text(m["content"], ("text",))))
        elif m["role"] == "tool":
            call_id = m["tool_call_id"]
            out.append(("result", call_id, names.get(call_id), _output(m["content"])))
        else:
            out.append(("other", m))
    return preamble, out


def responses_transcript(body: dict[str, Any]) -> tuple[list[Any], list[tuple[Any, ...]]]:
    preamble: list[Any] = [body["instructions"]] if body.get("instructions") else []
    out: list[tuple[Any, ...]] = []
    names: dict[str, str] = {}
    items = body["input"]
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items:
        kind = item.get("type", "message")
        role = item.get("role")
        if kind == "message" and role in ("system", "developer"):
            preamble.append(_text(item["content"], ("input_text",)))
        elif kind == "message" and role == "user":
            out.append(("user", _text(item["content"], ("input_text",))))
        elif kind == "message" and role == "assistant":
            out.append(("assistant", _text(item["content"], ("output_text",))))
        elif kind == "function_call":
            names[item["call_id"]] = item["name"]
            out.append(("call", item["call_id"], item["name"], json.loads(item["arguments"])))
        elif kind == "function_call_output":
            call_id = item["call_id"]
            out.append(("result", call_id, names.get(call_id), _output(item["output"])))
        else:
            out.append(("other", item))
    return preamble, out


def anthropic_transcript(body: dict[str, Any]) -> tuple[list[Any], list[tuple[Any, ...]]]:
    system = body.get("system")
    preamble = [_text(system, ("text",))] if system else []
    out: list[tuple[Any, ...]] = []
    names: dict[str, str] = {}
    for m in body["messages"]:
        blocks = m["content"]
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        for block in blocks:
            if block["type"] == "text":
                out.append((m["role"], block["text"]))
            elif block["type"] == "tool_use" and m["role"] == "assistant":
                names[block["id"]] = block["name"]
                out.append(("call", block["id"], block["name"], block["input"]))
            elif block["type"] == "tool_result" and m["role"] == "user":
                call_id = block["tool_use_id"]
                out.append(("result", call_id, names.get(call_id), _output(block["content"])))
            else:
                out.append(("other", block))
    return preamble, out


TRANSCRIBERS = {
    "openai_chat": chat_transcript,
    "openai_responses": responses_transcript,
    "anthropic": anthropic_transcript,
}


def upstream_transcript(request: RecordedRequest) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """(preamble texts, conversation) of one upstream request, provider-neutral."""
    assert request.protocol is not None
    return TRANSCRIBERS[request.protocol](request.json)


def log_transcript(log: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The same shape from the log, checking that every part is where it belongs."""
    out: list[tuple[Any, ...]] = []
    for message in log:
        role, parts = message["role"], message["parts"]
        for part in parts:
            kind = part["type"]
            if kind == "text" and role in ("user", "assistant"):
                out.append((role, part["text"]))
            elif kind.startswith("tool-") and kind != "tool-result" and role == "assistant":
                assert part["state"] == "input-available", part
                out.append(("call", part["toolCallId"], kind[5:], part["input"]))
            elif kind == "tool-result" and role == "tool":
                out.append(
                    ("result", part["toolCallId"], part["toolName"], _output(part["output"]))
                )
            else:
                out.append(("other", role, part))
    return out


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [param(n) for n in RUNS])
def test_aisdk_gets_every_answer(conversations: dict[str, Conversation], name: str) -> None:
    output = conversations[name].output
    assert "error" not in output, output
    turns = output["turns"]
    assert [t["kind"] for t in turns] == [
        "generateText",
        "streamText",
        "streamText",
        "generateText",
    ]
    assert [t["text"] for t in turns] == [
        "Oslo is cold: -3 C.",
        "Bergen is wet: 7 C.",
        "Bergen.",
        "Bye.",
    ]
    assert [t["steps"] for t in turns] == [2, 2, 1, 1]
    assert all(t["finishReason"] == "stop" for t in turns)
    assert [t["streamed"] for t in turns[1:3]] == ["Bergen is wet: 7 C.", "Bergen."]
    assert turns[0]["toolCalls"] == [
        {"id": f"call_{name}_1", "name": "weather", "input": {"city": "Oslo"}}
    ]
    assert turns[0]["toolResults"] == [
        {"id": f"call_{name}_1", "name": "weather", "output": {"city": "Oslo", "celsius": -3}}
    ]
    assert turns[1]["toolCalls"] == [
        {"id": f"call_{name}_2", "name": "weather", "input": {"city": "Bergen"}}
    ]
    assert turns[1]["toolResults"] == [
        {"id": f"call_{name}_2", "name": "weather", "output": {"city": "Bergen", "celsius": 7}}
    ]
    roles = [m["role"] for m in output["history"]]
    assert roles == ["user", "assistant", "tool", "assistant"] * 2 + ["user", "assistant"] * 2


@pytest.mark.parametrize("name", [param(n) for n in RUNS])
def test_upstream_gets_each_turn_once(conversations: dict[str, Conversation], name: str) -> None:
    conversation = conversations[name]
    requests = conversation.requests
    assert [r.protocol for r in requests] == [conversation.run.protocol] * 6
    assert [r.status for r in requests] == [200] * 6
    assert [r.stream for r in requests] == STREAMED
    whole = expected(name)
    for i, (request, length) in enumerate(zip(requests, PROMPT_LENGTHS, strict=True)):
        preamble, sent = upstream_transcript(request)
        # the system prompt every time; earlier turns, tool calls and results exactly once
        assert preamble == [SYSTEM], f"upstream call {i}"
        assert sent == whole[:length], f"upstream call {i}"
        assert request.json["model"] == conversation.run.model
        tools = request.json["tools"]
        assert [t.get("name") or t["function"]["name"] for t in tools] == ["weather"]


@pytest.mark.parametrize("name", [param(n) for n in RUNS])
def test_log_holds_each_turn_once(conversations: dict[str, Conversation], name: str) -> None:
    conversation = conversations[name]
    log = conversation.log
    assert [m["seq"] for m in log] == list(range(1, 13))
    assert [m["role"] for m in log] == ["user", "assistant", "tool", "assistant"] * 2 + [
        "user",
        "assistant",
    ] * 2
    assert all(len(m["parts"]) == 1 for m in log)  # one step, one message
    assert log_transcript(log) == expected(name)
    assert SYSTEM not in json.dumps(log)  # the preamble is not logged
    # each stored reply counts what the upstream said it generated
    replies = [m for m in log if m["role"] == "assistant"]
    generated = [r.turn.completion_tokens for r in conversation.requests if r.turn is not None]
    assert [m["token_count"] for m in replies] == generated
    window = conversation.window
    assert window["segments"] == [{"type": "live", "from_seq": 1, "to_seq": 12}]
    assert [m["seq"] for m in window["messages"]] == list(range(1, 13))
