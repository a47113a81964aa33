"""Proxy behaviour across formats: budgets, edited turns, disconnects, races, keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from fastpaca_proxy.fake_upstream import Reply, ToolCall

from .support import ANTHROPIC_MODEL, OPENAI_MODEL, Stack, run_stack


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_long_conversation_stays_within_budget(stack: Stack) -> None:
    stack.api.put("/v1/contexts/tight", json={"token_budget": 200, "trigger_ratio": 0.6})
    sdk = stack.track(openai.OpenAI(base_url=stack.openai_url("tight"), api_key="k", max_retries=0))
    history: list[dict[str, object]] = [{"role": "system", "content": "sys"}]
    sizes = []
    for turn in range(15):
        history.append({"role": "user", "content": f"question number {turn} " * 3})
        raw = sdk.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=history)
        reply = raw.parse().choices[0].message.content
        history.append({"role": "assistant", "content": reply})
        assert int(raw.headers["X-Fastpaca-Used-Tokens"]) <= 200
        sent = stack.fake.last.json["messages"]
        assert sent[0] == {"role": "system", "content": "sys"}
        assert sent[-1] == history[-2]  # the newest turn always reaches the model
        sizes.append(len(sent))
    assert max(sizes) < len(history) - 10  # older turns were compacted away
    assert len(stack.log("tight")) == 30  # ... but the log has every message
    window = stack.window("tight")
    assert window["used_tokens"] <= 200
    assert window["segments"][-1]["to_seq"] == 30


def test_regenerated_turn_leaves_the_window_but_not_the_log(stack: Stack) -> None:
    sdk = stack.track(openai.OpenAI(base_url=stack.openai_url("regen"), api_key="k", max_retries=0))
    q1 = {"role": "user", "content": "q1"}
    q2 = {"role": "user", "content": "q2"}
    stack.fake.script("a1", "a2", "a2 again")
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=[q1])
    a1 = {"role": "assistant", "content": "a1"}
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=[q1, a1, q2])
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=[q1, a1, q2])  # regenerate
    assert stack.fake.last.json["messages"] == [q1, a1, q2]  # "a2" is gone from the context
    assert stack.texts("regen") == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
        ("assistant", "a2"),
        ("user", "q2"),
        ("assistant", "a2 again"),
    ]
    texts = [m["parts"][0]["text"] for m in stack.window("regen")["messages"]]
    assert texts == ["q1", "a1", "q2", "a2 again"]


def test_client_leaving_mid_stream_still_stores_the_reply(stack: Stack) -> None:
    stack.fake.script(Reply(text="x" * 200, chunks=20, delay=0.03))
    body = {"model": OPENAI_MODEL, "stream": True, "messages": [{"role": "user", "content": "go"}]}
    with httpx.Client(timeout=10) as raw:
        with raw.stream("POST", f"{stack.openai_url('gone')}/chat/completions", json=body) as r:
            assert r.status_code == 200
            next(r.iter_raw())  # the first event, then hang up
    wait_for(lambda: len(stack.log("gone")) == 2)
    assert stack.log("gone")[1]["parts"][0]["text"] == "x" * 200


def test_two_concurrent_requests_both_stored(stack: Stack) -> None:
    stack.fake.script(Reply(text="slow", latency=0.3), Reply(text="fast", latency=0.3))
    errors: list[BaseException] = []

    def ask(text: str) -> None:
        try:
            with openai.OpenAI(base_url=stack.openai_url("race"), api_key="k", max_retries=0) as c:
                c.chat.completions.create(
                    model=OPENAI_MODEL, messages=[{"role": "user", "content": text}]
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(t,)) for t in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    texts = stack.texts("race")
    assert sorted(t for r, t in texts if r == "user") == ["first", "second"]
    assert sorted(t for r, t in texts if r == "assistant") == ["fast", "slow"]


def test_conversation_begun_in_openai_continues_in_anthropic(stack: Stack) -> None:
    stack.fake.script(
        Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"}, id="call_x")]), "Cold."
    )
    oai = stack.track(openai.OpenAI(base_url=stack.openai_url("cross"), api_key="k", max_retries=0))
    first = oai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "weather?"}]
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    oai.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[
            {"role": "user", "content": "weather?"},
            first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "3 degrees"},
        ],
    )
    ant = stack.track(
        anthropic.Anthropic(base_url=stack.anthropic_url("cross"), api_key="k", max_retries=0)
    )
    ant.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=20, messages=[{"role": "user", "content": "and now?"}]
    )
    sent = stack.fake.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    tool_use = next(b for b in sent[1]["content"] if b["type"] == "tool_use")
    assert (tool_use["id"], tool_use["name"], tool_use["input"]) == (
        "call_x",
        "weather",
        {"city": "Oslo"},
    )
    result = sent[2]["content"][0]
    assert (result["type"], result["tool_use_id"]) == ("tool_result", "call_x")
    assert sent[-1]["content"] in ("and now?", [{"type": "text", "text": "and now?"}])


def test_request_fields_cannot_redirect_the_upstream(stack: Stack) -> None:
    body = {
        "model": OPENAI_MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "base_url": "http://127.0.0.1:9/v1",
        "api_base": "http://127.0.0.1:9/v1",
    }
    reply = stack.api.post(
        f"{stack.openai_url('ssrf')}/chat/completions",
        json=body,
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert reply.status_code == 200
    assert stack.fake.last.path == "/v1/chat/completions"
    assert "x-forwarded-host" not in stack.fake.last.headers


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Stack]:
    with run_stack(
        f"sqlite:///{tmp_path / 'k.db'}", api_key="fp-secret", openai_api_key="sk-server"
    ) as running:
        yield running


def test_keys_with_fastpaca_auth_on(keyed: Stack) -> None:
    messages = [{"role": "user", "content": "hi"}]
    # the Fastpaca key as the SDK's api_key: consumed here, the server's key goes upstream
    with openai.OpenAI(base_url=keyed.openai_url("k1"), api_key="fp-secret", max_retries=0) as c:
        c.chat.completions.create(model=OPENAI_MODEL, messages=messages)
    assert keyed.fake.last.headers["authorization"] == "Bearer sk-server"
    # or in its own header, the provider key in Authorization (replaced by the server's)
    with openai.OpenAI(
        base_url=keyed.openai_url("k1"),
        api_key="sk-client",
        default_headers={"X-Fastpaca-Key": "fp-secret"},
        max_retries=0,
    ) as c:
        c.chat.completions.create(model=OPENAI_MODEL, messages=messages)
    assert keyed.fake.last.headers["authorization"] == "Bearer sk-server"
    assert "x-fastpaca-key" not in keyed.fake.last.headers
    with openai.OpenAI(base_url=keyed.openai_url("k1"), api_key="wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            c.chat.completions.create(model=OPENAI_MODEL, messages=messages)
    assert len(keyed.fake.requests) == 2
