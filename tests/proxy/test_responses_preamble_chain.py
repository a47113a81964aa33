"""A Responses call that continues by ``previous_response_id`` keeps the
system / developer items of the chain it continues (``preambles``), as
OpenAI's own chain does: what reached the upstream is asserted."""

from __future__ import annotations

from typing import Any

import pytest

from fastpaca_core.jsonutil import dumps
from fastpaca_proxy.fake_upstream import Reply
from fastpaca_proxy.preambles import Preambles

from .support import OPENAI_MODEL, Stack, openai_client

SYSTEM = {"role": "system", "content": "You answer in French."}


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _inputs(stack: Stack) -> list[list[dict[str, Any]]]:
    """The ``input`` of every Responses request the upstream received."""
    return [r.json["input"] for r in stack.fake.requests_for("openai_responses")]


def test_a_chain_keeps_the_first_calls_system_item(stack: Stack) -> None:
    sdk = openai_client(stack, "chain-1")
    stack.fake.script(Reply(text="Bonjour."), Reply(text="Oui."), Reply(text="Non."))
    first = sdk.responses.create(model=OPENAI_MODEL, input=[SYSTEM, _user("hello")])
    second = sdk.responses.create(
        model=OPENAI_MODEL, previous_response_id=first.id, input=[_user("yes?")]
    )
    sdk.responses.create(model=OPENAI_MODEL, previous_response_id=second.id, input="no?")
    inputs = _inputs(stack)
    assert len(inputs) == 3
    for sent in inputs[1:]:
        assert sent[0] == SYSTEM  # carried along the chain, two links deep
        assert [item.get("role") for item in sent].count("system") == 1
    assert inputs[2][-1]["content"] == "no?"
    assert "previous_response_id" not in stack.fake.last.json
    assert all(role != "system" for role, _ in stack.texts("chain-1"))  # never logged


def test_a_streamed_call_passes_its_preamble_on_and_inherits_one(stack: Stack) -> None:
    sdk = openai_client(stack, "chain-stream")
    stack.fake.script(Reply(text="Bonjour."), Reply(text="Oui."), Reply(text="Non."))
    with sdk.responses.stream(model=OPENAI_MODEL, input=[SYSTEM, _user("hello")]) as stream:
        first = stream.get_final_response()
    with sdk.responses.stream(
        model=OPENAI_MODEL, previous_response_id=first.id, input="yes?"
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == "Oui."
    sdk.responses.create(model=OPENAI_MODEL, previous_response_id=second.id, input="no?")
    inputs = _inputs(stack)
    assert inputs[1][0] == SYSTEM  # a streamed call inherits
    assert inputs[2][0] == SYSTEM  # and a streamed reply's id passes it on


def test_a_request_with_its_own_system_item_overrides_and_passes_it_on(stack: Stack) -> None:
    sdk = openai_client(stack, "chain-override")
    stack.fake.script(Reply(text="Bonjour."), Reply(text="Hallo."), Reply(text="Ja."))
    german = {"role": "developer", "content": "Answer in German."}
    first = sdk.responses.create(model=OPENAI_MODEL, input=[SYSTEM, _user("hello")])
    second = sdk.responses.create(
        model=OPENAI_MODEL, previous_response_id=first.id, input=[german, _user("again")]
    )
    sdk.responses.create(model=OPENAI_MODEL, previous_response_id=second.id, input="yes?")
    inputs = _inputs(stack)
    for sent in inputs[1:]:
        assert sent[0] == german
        assert SYSTEM not in sent


def test_an_unknown_response_id_goes_without_a_preamble_and_warns(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    sdk = openai_client(stack, "chain-unknown")
    stack.fake.script(Reply(text="Hi."))
    with caplog.at_level("WARNING", logger="fastpaca.proxy"):
        reply = sdk.responses.with_raw_response.create(
            model=OPENAI_MODEL, previous_response_id="resp_elsewhere", input="hello"
        )
    assert reply.status_code == 200
    assert _inputs(stack)[0] == [_user("hello")]  # as it was sent
    warnings = [r for r in caplog.records if "previous_response_id" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].fields == {"context_id": "chain-unknown"}  # type: ignore[attr-defined]


def test_another_contexts_response_id_lends_nothing(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = openai_client(stack, "chain-theirs")
    ours = openai_client(stack, "chain-ours")
    stack.fake.script(Reply(text="Bonjour."), Reply(text="Hi."), Reply(text="Oui."))
    first = theirs.responses.create(model=OPENAI_MODEL, input=[SYSTEM, _user("hello")])
    with caplog.at_level("WARNING", logger="fastpaca.proxy"):
        ours.responses.create(model=OPENAI_MODEL, previous_response_id=first.id, input="hello")
    theirs.responses.create(model=OPENAI_MODEL, previous_response_id=first.id, input="yes?")
    inputs = _inputs(stack)
    assert inputs[1] == [_user("hello")]  # not theirs
    assert inputs[2][0] == SYSTEM  # theirs, in their own context
    warned = [r for r in caplog.records if "previous_response_id" in r.getMessage()]
    assert [r.fields for r in warned] == [{"context_id": "chain-ours"}]  # type: ignore[attr-defined]


def test_langchain_previous_response_id_keeps_the_system_message(stack: Stack) -> None:
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(
        model=OPENAI_MODEL,
        base_url=stack.openai_url("chain-langchain"),
        api_key="sk",  # type: ignore[arg-type]
        max_retries=0,
        use_responses_api=True,
        use_previous_response_id=True,
    )
    stack.fake.script(Reply(text="Bonjour."), Reply(text="Oui."))
    history: list[Any] = [SystemMessage("You answer in French."), HumanMessage("hello")]
    history.append(model.invoke(history))
    history.append(HumanMessage("yes?"))
    model.invoke(history)
    first, second = (r.json for r in stack.fake.requests_for("openai_responses"))
    assert "previous_response_id" not in first
    system = first["input"][0]
    assert system["role"] == "system"
    assert second["input"][0] == system  # LangChain sent it with the first turn only
    assert second["input"][-1]["content"] == "yes?"


def test_the_memory_keeps_each_preamble_once_and_stays_bounded() -> None:
    memory = Preambles(max_responses=3)
    big = [{"role": "system", "content": "x" * 1000}]
    for n in range(3):
        memory.remember("ctx", f"resp_{n}", [dict(item) for item in big])  # equal, not the same
    assert memory.size == len(b'[{"role":"system","content":""}]') + 1000  # kept once
    memory.remember("ctx", "resp_3", [])
    assert memory.inherited("ctx", "resp_0") == []  # the oldest id went
    assert memory.inherited("ctx", "resp_1") == big
    assert memory.inherited("ctx", "resp_3") == []
    memory.remember("ctx", "resp_4", [SYSTEM])
    memory.remember("ctx", "resp_5", [SYSTEM])
    assert memory.inherited("ctx", "resp_2") == []  # its preamble's last id went...
    assert memory.size == len(b"[]") + len(dumps([SYSTEM]))  # ...and the preamble
    assert memory.inherited("other", "resp_5") == []
    assert memory.inherited("ctx", "resp_5") == [SYSTEM]


def test_a_token_count_that_continues_a_response_counts_its_preamble(stack: Stack) -> None:
    sdk = openai_client(stack, "chain-count")
    stack.fake.script(Reply(text="Bonjour."))
    first = sdk.responses.create(model=OPENAI_MODEL, input=[SYSTEM, _user("hello")])
    sdk.responses.input_tokens.count(
        model=OPENAI_MODEL, previous_response_id=first.id, input="yes?"
    )
    counted = [r.json for r in stack.fake.requests if r.path == "/v1/responses/input_tokens"]
    assert len(counted) == 1
    assert counted[0]["input"][0] == SYSTEM  # as the call itself would be sent
    assert counted[0]["input"][-1]["content"] == "yes?"


def test_a_response_id_answered_twice_keeps_the_memory_whole() -> None:
    """An upstream that gives one response id twice (a caching gateway's
    replay): the preamble stays counted and held, and evictions later on
    (another context's calls, the oldest first) find what they let go."""
    memory = Preambles(max_responses=2)
    preamble = [SYSTEM]
    memory.remember("ctx", "resp_same", preamble)
    memory.remember("ctx", "resp_same", preamble)
    assert memory.size == len(dumps(preamble))
    assert memory.inherited("ctx", "resp_same") == preamble
    memory.remember("ctx", "resp_next", preamble)
    memory.remember("other", "resp_y", [])  # resp_same goes
    memory.remember("other", "resp_z", [])  # resp_next goes, and the preamble
    assert memory.size == len(b"[]")
    assert memory.inherited("other", "resp_z") == []
