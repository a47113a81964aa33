"""An ai-sdk assistant UIMessage of several steps goes out step by step.

ai-sdk's ``useChat`` stores a whole multi-step answer as one assistant message:
``step-start``, the text and tool parts of step 1 (calls settled in place,
``state: output-available``), ``step-start``, step 2... Each step saw the
results of the calls before it, so the model must get them in that order:
call, result, then what followed (as ai-sdk's ``convertToModelMessages``
does), never the later text ahead of the results it was written from.
"""

from __future__ import annotations

from typing import Any

from fastpaca_core.formats import to_anthropic, to_openai_chat, to_responses_input
from fastpaca_core.model import Message

QUESTION = Message("user", [{"type": "text", "text": "Weather in Oslo?"}])
STEPS = Message(
    "assistant",
    [
        {"type": "step-start"},
        {"type": "text", "text": "Let me check."},
        {
            "type": "tool-weather",
            "toolCallId": "c1",
            "state": "output-available",
            "input": {"city": "Oslo"},
            "output": "-3 C",
        },
        {"type": "step-start"},
        {
            "type": "tool-wind",
            "toolCallId": "c2",
            "state": "output-available",
            "input": {"city": "Oslo"},
            "output": "calm",
        },
        {"type": "step-start"},
        {"type": "text", "text": "Cold and calm."},
    ],
)
# one step whose text came with the call, before any result: stays one turn
ONE_STEP = Message(
    "assistant",
    [
        {"type": "text", "text": "Checking."},
        {"type": "tool-weather", "toolCallId": "c3", "state": "input-available", "input": {}},
    ],
)


def _chat_shape(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    shape: list[tuple[str, Any]] = []
    for m in messages:
        if m["role"] == "tool":
            shape.append(("tool", m["tool_call_id"]))
        elif m["role"] == "assistant":
            calls = [c["id"] for c in m.get("tool_calls", [])]
            shape.append(("assistant", (m.get("content"), calls)))
        else:
            shape.append((m["role"], m.get("content")))
    return shape


def test_openai_chat_sends_each_step_after_the_results_before_it() -> None:
    shape = _chat_shape(to_openai_chat([QUESTION, STEPS]))
    assert shape == [
        ("user", "Weather in Oslo?"),
        ("assistant", ("Let me check.", ["c1"])),
        ("tool", "c1"),
        ("assistant", (None, ["c2"])),
        ("tool", "c2"),
        ("assistant", ("Cold and calm.", [])),
    ]


def _blocks(turn: dict[str, Any]) -> list[Any]:
    content = turn["content"]
    if isinstance(content, str):
        return [("text", content)]
    out: list[Any] = []
    for block in content:
        if block["type"] == "text":
            out.append(("text", block["text"]))
        elif block["type"] == "tool_use":
            out.append(("tool_use", block["id"]))
        elif block["type"] == "tool_result":
            out.append(("tool_result", block["tool_use_id"]))
    return out


def test_anthropic_sends_each_step_after_the_results_before_it() -> None:
    payload = to_anthropic([QUESTION, STEPS])
    shape = [(turn["role"], _blocks(turn)) for turn in payload.messages]
    assert shape == [
        ("user", [("text", "Weather in Oslo?")]),
        ("assistant", [("text", "Let me check."), ("tool_use", "c1")]),
        ("user", [("tool_result", "c1")]),
        ("assistant", [("tool_use", "c2")]),
        ("user", [("tool_result", "c2")]),
        ("assistant", [("text", "Cold and calm.")]),
    ]


def _item_shape(item: dict[str, Any]) -> tuple[str, Any]:
    kind = item.get("type", "message")
    if kind == "function_call":
        return ("call", item["call_id"])
    if kind == "function_call_output":
        return ("output", item["call_id"])
    content = item.get("content")
    if isinstance(content, list):
        content = "".join(str(c.get("text", "")) for c in content)
    return (str(item.get("role")), content)


def test_responses_sends_each_step_after_the_results_before_it() -> None:
    shape = [_item_shape(item) for item in to_responses_input([QUESTION, STEPS])]
    assert shape == [
        ("user", "Weather in Oslo?"),
        ("assistant", "Let me check."),
        ("call", "c1"),
        ("output", "c1"),
        ("call", "c2"),
        ("output", "c2"),
        ("assistant", "Cold and calm."),
    ]


def test_one_step_stays_one_turn_in_every_format() -> None:
    chat = _chat_shape(to_openai_chat([QUESTION, ONE_STEP]))
    assert chat == [("user", "Weather in Oslo?"), ("assistant", ("Checking.", ["c3"]))]
    anthropic = [(t["role"], _blocks(t)) for t in to_anthropic([QUESTION, ONE_STEP]).messages]
    assert anthropic[1:] == [("assistant", [("text", "Checking."), ("tool_use", "c3")])]
    responses = [_item_shape(i) for i in to_responses_input([QUESTION, ONE_STEP])]
    assert responses[1:] == [("assistant", "Checking."), ("call", "c3")]
