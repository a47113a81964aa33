"""One conversation through the OpenAI proxy (the real openai SDK) and LangChain in turn.

The SDK talks to the proxy, which stores the turns; the LangChain history reads
them (tool call and result included) and adds a turn of its own with a tool
call; the SDK's next request then reaches the upstream with LangChain's turn
in OpenAI's shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.tool import tool_call
from lc_support import check_tool_pairs
from proxy.support import OPENAI_MODEL, Stack, run_stack

from fastpaca_proxy.fake_upstream import Reply, ToolCall
from langchain_fastpaca import FastpacaChatMessageHistory, RemoteConnection


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with run_stack(f"sqlite:///{tmp_path / 'proxy.db'}") as running:
        yield running


def test_openai_sdk_and_langchain_share_one_conversation(stack: Stack) -> None:
    sdk = openai.OpenAI(base_url=stack.openai_url("mixed"), api_key="sk-test", max_retries=0)
    stack.fake.script(
        Reply(tool_calls=[ToolCall("weather", {"city": "Oslo"}, id="call_a")]),
        Reply(text="Sunny, 12 degrees."),
    )
    sent: list[dict[str, object]] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = sdk.chat.completions.create(model=OPENAI_MODEL, messages=sent)
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    sent += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "weather", "arguments": call.function.arguments},  # type: ignore[union-attr]
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "12 degrees"},
    ]
    sdk.chat.completions.create(model=OPENAI_MODEL, messages=sent)

    with RemoteConnection(stack.base) as connection:
        history = FastpacaChatMessageHistory("mixed", connection)
        proxied = history.messages
        assert proxied == [
            HumanMessage("Weather in Oslo?"),
            AIMessage(
                "", tool_calls=[tool_call(name="weather", args={"city": "Oslo"}, id="call_a")]
            ),
            ToolMessage("12 degrees", tool_call_id="call_a", name="weather"),
            AIMessage("Sunny, 12 degrees."),
        ]
        ours: list[BaseMessage] = [
            HumanMessage("And tomorrow?"),
            AIMessage("", tool_calls=[tool_call(name="forecast", args={"day": 1}, id="lc_1")]),
            ToolMessage("rain", tool_call_id="lc_1"),
            AIMessage("Rain tomorrow."),
        ]
        history.add_messages(ours)
        check_tool_pairs(history.messages)
        assert list(history.iter_history()) == [*proxied, *ours]

    sdk.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "Thanks!"}]
    )
    upstream = stack.fake.last.json["messages"]
    assert upstream[4:] == [
        {"role": "user", "content": "And tomorrow?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "lc_1",
                    "type": "function",
                    "function": {"name": "forecast", "arguments": '{"day":1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "lc_1", "content": "rain"},
        {"role": "assistant", "content": "Rain tomorrow."},
        {"role": "user", "content": "Thanks!"},
    ]
    assert json.loads(upstream[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
