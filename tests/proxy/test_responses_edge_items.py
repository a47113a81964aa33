"""The Responses API with ``store: false`` through the proxy.

With ``store: false`` the upstream keeps nothing, so a reasoning item sent
back without its ``encrypted_content`` names an item it cannot find (OpenAI
answers 404 "Item with id 'rs_...' not found. Items are not persisted when
`store` is set to false"). A client sending only its newest message does not
choose what the proxy sends from the log: such items must stay out, as
ai-sdk leaves them out, or every later turn of the conversation fails.
"""

from __future__ import annotations

from typing import Any

import openai

from fastpaca_proxy.fake_upstream import Reply

from .support import OPENAI_MODEL, Stack


def client(stack: Stack, context_id: str) -> openai.OpenAI:
    return stack.track(
        openai.OpenAI(base_url=stack.openai_url(context_id), api_key="sk", max_retries=0)
    )


def _reasoning(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in items if item.get("type") == "reasoning"]


def test_store_false_leaves_out_reasoning_the_upstream_cannot_find(stack: Stack) -> None:
    sdk = client(stack, "rs-nostore")
    stack.fake.script(Reply(reasoning="thinking it over", text="Four."), "Five.", "Six.")
    first = sdk.responses.create(model=OPENAI_MODEL, input="2+2?", store=False)
    assert [item.type for item in first.output] == ["reasoning", "message"]
    sdk.responses.create(model=OPENAI_MODEL, input="and 2+3?", store=False)
    sent = stack.fake.last.json["input"]
    assert _reasoning(sent) == []  # no encrypted_content: the upstream could not read it
    assert [item.get("role") for item in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][0]["text"] == "Four."
    # the log keeps it, and a call that lets the upstream store sends it
    assert stack.log("rs-nostore")[1]["parts"][0]["type"] == "reasoning"
    sdk.responses.create(model=OPENAI_MODEL, input="and 3+3?")
    assert [item["id"] for item in _reasoning(stack.fake.last.json["input"])] == [
        first.output[0].id
    ]


def test_store_false_keeps_reasoning_with_its_encrypted_content(stack: Stack) -> None:
    sdk = client(stack, "rs-encrypted")
    stack.fake.script("One.", "Two.")
    reasoning = {
        "type": "reasoning",
        "id": "rs_earlier",
        "summary": [],
        "encrypted_content": "gAAAAB-opaque",
    }
    history: list[Any] = [
        {"role": "user", "content": "first"},
        reasoning,
        {"role": "assistant", "content": "Zero."},
        {"role": "user", "content": "second"},
    ]
    sdk.responses.create(
        model=OPENAI_MODEL,
        input=history,
        store=False,
        include=["reasoning.encrypted_content"],
    )
    assert stack.fake.last.json["input"] == history
    sdk.responses.create(
        model=OPENAI_MODEL,
        input="third",
        store=False,
        include=["reasoning.encrypted_content"],
    )
    sent = stack.fake.last.json["input"]
    assert _reasoning(sent) == [reasoning]
    assert sent[-1] == {"role": "user", "content": "third"}


def test_an_item_with_an_odd_role_is_the_upstreams_to_judge(stack: Stack) -> None:
    """An input item whose ``role`` is not a string (a list, an object) is
    kept verbatim and sent on, as formats.md promises, not a 500."""
    sdk = client(stack, "odd-role")
    sdk.responses.create(model=OPENAI_MODEL, input="hello")
    odd: dict[str, Any] = {"role": ["user"], "content": "odd"}
    reply = stack.api.post(
        "/v1/contexts/odd-role/openai/responses",
        json={"model": OPENAI_MODEL, "input": [odd, {"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer sk"},
    )
    assert reply.status_code == 200, reply.text
    assert stack.fake.last.json["input"][-2:] == [odd, {"role": "user", "content": "hi"}]
    assert [m["role"] for m in stack.log("odd-role")][:2] == ["user", "assistant"]
