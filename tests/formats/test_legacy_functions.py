"""OpenAI Chat's legacy function calling (``function_call`` / ``function`` messages).

Stored as a tool call and its result under one synthetic id, so the window
pairs them as any call and result; sent back to Chat in the legacy shape. The
proxy part runs the whole stack on loopback: Fastpaca with its proxy in front
of the fake upstream, driven by the real ``openai`` SDK, read back through
the canonical HTTP API.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from loopback import serve_app

from fastpaca_core.formats import (
    from_openai_chat,
    reply_from_chat_completion,
    resolve_function_results,
    to_anthropic,
    to_openai_chat,
    to_responses_input,
)
from fastpaca_core.http import create_app
from fastpaca_core.model import Message
from fastpaca_core.settings import Settings
from fastpaca_core.toolcalls import tool_refs
from fastpaca_proxy import install_proxy
from fastpaca_proxy.fake_upstream import FakeUpstream

from .support import valid_chat

JSON = dict[str, Any]


def _call(name: str, arguments: str, **more: Any) -> JSON:
    return {"role": "assistant", "function_call": {"name": name, "arguments": arguments}, **more}


def _answer(name: str, content: str, **more: Any) -> JSON:
    return {"role": "function", "name": name, "content": content, **more}


HISTORY: list[JSON] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Oslo?"},
    _call("get_weather", '{"city": "Oslo"}'),
    _answer("get_weather", "sunny"),
    {"role": "assistant", "content": "Sunny."},
    {"role": "user", "content": "And Bergen, in detail?"},
    _call("get_weather", '{"city":"Bergen"}', content="Checking.", x_future=1),
    _answer("get_weather", "rain", x_future=2),
    {"role": "assistant", "content": "Rain."},
]


def _ids(messages: list[Message]) -> list[tuple[frozenset[str], frozenset[str]]]:
    return [tool_refs(m) for m in messages]


def test_round_trip_is_exact_and_pairs_call_and_result() -> None:
    valid_chat(HISTORY)
    split = from_openai_chat(HISTORY)
    assert split.preamble == HISTORY[:1]
    assert to_openai_chat(split.messages) == HISTORY[1:]
    roles = [m.role for m in split.messages]
    assert roles == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    refs = _ids(split.messages)
    first, second = refs[1][0], refs[5][0]
    assert len(first) == len(second) == 1 and first != second
    assert refs[2] == (frozenset(), first) and refs[6] == (frozenset(), second)
    call = split.messages[1].parts[0]
    assert call["type"] == "tool-get_weather" and call["input"] == {"city": "Oslo"}
    result = split.messages[2].parts[0]
    assert result["type"] == "tool-result" and result["toolName"] == "get_weather"
    assert result["output"] == "sunny"
    # the message's other keys ride as with any message
    assert split.messages[6].metadata == {"providerMetadata": {"openai": {"chat": {"x_future": 2}}}}


def test_the_same_call_gets_the_same_id_in_a_request_and_in_a_reply() -> None:
    body = {
        "choices": [{"index": 0, "message": {"content": None, **_call("f", '{"a": 1}')}}],
        "usage": {"completion_tokens": 7},
    }
    reply = reply_from_chat_completion(body)
    request = from_openai_chat([{"role": "user", "content": "go"}, _call("f", '{"a": 1}')])
    assert reply.parts == request.messages[1].parts
    assert [(p["type"], p["input"]) for p in reply.parts] == [("tool-f", {"a": 1})]
    assert tool_refs(reply)[0] == {reply.parts[0]["toolCallId"]}
    assert to_openai_chat([reply]) == [_call("f", '{"a": 1}')]


def test_a_result_answers_the_nearest_unanswered_call_of_its_name() -> None:
    history = [
        {"role": "user", "content": "go"},
        _call("f", '{"n": 1}'),
        _call("g", "{}"),
        _call("f", '{"n": 2}'),
        _answer("f", "two"),
        _answer("f", "one"),
        _answer("g", "gee"),
    ]
    split = from_openai_chat(history)
    calls = [next(iter(refs[0])) for refs in _ids(split.messages[1:4])]
    results = [next(iter(refs[1])) for refs in _ids(split.messages[4:])]
    assert results == [calls[2], calls[0], calls[1]]
    assert to_openai_chat(split.messages) == history


def test_a_result_sent_alone_is_paired_with_its_call_in_the_log() -> None:
    logged = from_openai_chat(HISTORY[1:3]).messages  # the question and the call
    alone = from_openai_chat([_answer("get_weather", "sunny")]).messages
    assert tool_refs(alone[0])[1] != tool_refs(logged[1])[0]  # the request alone cannot tell
    resolved = resolve_function_results(alone, logged)
    assert tool_refs(resolved[0])[1] == tool_refs(logged[1])[0]
    assert resolved[0].parts == from_openai_chat(HISTORY[1:4]).messages[2].parts
    assert to_openai_chat(resolved) == [_answer("get_weather", "sunny")]
    # a call already answered in the log is passed over for one still waiting
    waiting = from_openai_chat([_call("get_weather", "{}")]).messages
    log = [*waiting, *from_openai_chat(HISTORY[1:4]).messages]
    resolved = resolve_function_results(alone, log)
    assert tool_refs(resolved[0])[1] == tool_refs(waiting[0])[0]


def test_other_providers_get_an_ordinary_call_and_result() -> None:
    split = from_openai_chat(HISTORY[1:4])
    call_id = next(iter(tool_refs(split.messages[1])[0]))
    items = to_responses_input(split.messages)
    assert items[1]["type"] == "function_call" and items[1]["call_id"] == call_id
    assert items[2] == {"type": "function_call_output", "call_id": call_id, "output": "sunny"}
    turns = to_anthropic(split.messages).messages
    assert turns[1]["content"][0]["id"] == call_id
    assert turns[2]["content"][0]["tool_use_id"] == call_id


def test_an_unreadable_function_call_is_kept_as_it_came() -> None:
    history: list[JSON] = [
        _call("f", "{}"),
        {"role": "assistant", "function_call": "oops"},
        {"role": "assistant", "function_call": {"name": "f"}},
        {"role": "function", "content": "no name"},
        _answer("f", "done"),
    ]
    split = from_openai_chat(history)
    refs = _ids(split.messages)
    assert refs[1:4] == [(frozenset(), frozenset())] * 3  # kept whole, pairing nothing
    assert refs[0][0] == refs[4][1] and len(refs[0][0]) == 1  # the readable pair still pairs
    assert to_openai_chat(split.messages) == history


# -- through the proxy ------------------------------------------------------------

MODEL = "gpt-test"


@pytest.fixture
async def proxy(tmp_path: Any) -> AsyncIterator[tuple[FakeUpstream, str]]:
    async with FakeUpstream() as fake:
        config = Settings(
            store=f"sqlite:///{tmp_path / 'legacy.db'}",
            openai_base_url=fake.openai_base_url,
            anthropic_base_url=fake.base_url,
        )
        runner, port = await serve_app(install_proxy(create_app(config)))
        try:
            yield fake, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


def _paired(messages: list[JSON]) -> bool:
    """Every ``function`` message right after the ``function_call`` of its name."""
    return all(
        index > 0 and messages[index - 1].get("function_call", {}).get("name") == m["name"]
        for index, m in enumerate(messages)
        if m.get("role") == "function"
    )


async def test_a_compaction_never_leaves_the_function_message_alone(
    proxy: tuple[FakeUpstream, str],
) -> None:
    """``last_n`` down to 4 messages after the first turn would keep the
    function message without its call."""
    fake, base = proxy
    question = "Weather in Oslo? " + "Tell me everything. " * 40  # over the trigger alone
    history: list[JSON] = [
        {"role": "user", "content": question},
        _call("get_weather", '{"city": "Oslo"}'),
        _answer("get_weather", "sunny"),
        {"role": "assistant", "content": "Sunny in Oslo."},
        {"role": "user", "content": "Thanks. And tomorrow?"},
    ]
    # over 5 messages and 105 tokens (the trigger): cut to 4 messages and 105 tokens
    config = {"policy": {"strategy": "last_n", "config": {"limit": 5}}, "token_budget": 150}
    async with httpx.AsyncClient(base_url=base) as api:
        put = await api.put("/v1/contexts/legacy-1", json=config)
        assert put.status_code == 200
        async with openai.AsyncOpenAI(
            base_url=f"{base}/v1/contexts/legacy-1/openai", api_key="k", max_retries=0
        ) as client:
            await client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
            sent = fake.last.json["messages"]
            assert sent[-1] == history[-1] and _paired(sent), sent
            window = (await api.get("/v1/contexts/legacy-1/context")).json()["messages"]
            assert window and window[0]["role"] != "tool", window
            newest = {"role": "user", "content": "And the day after?"}
            await client.chat.completions.create(model=MODEL, messages=[newest])  # type: ignore[list-item]
        sent = fake.last.json["messages"]
        assert sent[-1] == newest
        assert sent[0]["role"] != "function" and _paired(sent), sent
        log = (await api.get("/v1/contexts/legacy-1/messages")).json()["messages"]
    roles = [m["role"] for m in log]
    assert roles == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    call, result = log[1]["parts"][0], log[2]["parts"][0]
    assert call["type"] == "tool-get_weather" and call["input"] == {"city": "Oslo"}
    assert result["type"] == "tool-result" and result["toolName"] == "get_weather"
    assert result["toolCallId"] == call["toolCallId"] and result["output"] == "sunny"


async def test_a_call_over_the_budget_goes_with_its_function_message(
    proxy: tuple[FakeUpstream, str],
) -> None:
    """The call counts at its size, and what cuts it cuts its answer too."""
    fake, base = proxy
    big = json.dumps({"city": "Oslo", "notes": "word " * 300})  # alone over the budget
    history: list[JSON] = [
        {"role": "user", "content": "Weather in Oslo?"},
        _call("get_weather", big),
        _answer("get_weather", "sunny"),
        {"role": "assistant", "content": "Sunny in Oslo."},
        {"role": "user", "content": "Thanks. And tomorrow?"},
    ]
    async with httpx.AsyncClient(base_url=base) as api:
        put = await api.put("/v1/contexts/legacy-3", json={"token_budget": 120})
        assert put.status_code == 200
        async with openai.AsyncOpenAI(
            base_url=f"{base}/v1/contexts/legacy-3/openai", api_key="k", max_retries=0
        ) as client:
            await client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
    assert fake.last.json["messages"] == history[3:]


async def test_a_function_message_sent_alone_pairs_with_its_call_in_the_log(
    proxy: tuple[FakeUpstream, str],
) -> None:
    fake, base = proxy
    question = {"role": "user", "content": "Weather in Oslo?"}
    call = _call("get_weather", '{"city": "Oslo"}')
    async with openai.AsyncOpenAI(
        base_url=f"{base}/v1/contexts/legacy-2/openai", api_key="k", max_retries=0
    ) as client:
        await client.chat.completions.create(model=MODEL, messages=[question, call])  # type: ignore[list-item]
        answer = _answer("get_weather", "sunny")
        await client.chat.completions.create(model=MODEL, messages=[answer])  # type: ignore[list-item]
        sent = fake.last.json["messages"]
        assert sent[1] == call and sent[-1] == answer
        # the client resending the whole history adds only its new message
        echo = {"role": "assistant", "content": "echo: Weather in Oslo?"}
        again = [question, call, echo, answer, echo, {"role": "user", "content": "Thanks."}]
        await client.chat.completions.create(model=MODEL, messages=again)  # type: ignore[arg-type]
        assert fake.last.json["messages"] == again
    async with httpx.AsyncClient(base_url=base) as api:
        log = (await api.get("/v1/contexts/legacy-2/messages")).json()["messages"]
    roles = [m["role"] for m in log]
    assert roles == ["user", "assistant", "assistant", "tool", "assistant", "user", "assistant"]
    assert log[3]["parts"][0]["toolCallId"] == log[1]["parts"][0]["toolCallId"]
